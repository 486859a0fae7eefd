import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { envWithoutAws } from '../support/cli';
import { launch, type Running, stillRunning, waitForOutput } from '../support/processes';

// The commands as a user runs them (`npm start`, `npm run send`, `npm run demo` are these tsx scripts).
const logs = mkdtempSync(join(tmpdir(), 'ingest-local-'));

afterAll(async () => {
  rmSync(logs, { recursive: true, force: true });
  // Every process a test started has ended with it (on a shared machine, leftovers pile up).
  expect(await stillRunning()).toEqual([]);
});

/** A user's shell: the suite's quiet Powertools settings removed, so the local stack's own defaults apply. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('POWERTOOLS_')) delete env[key];
  delete env.ENDPOINTS;
  return { ...env, ...extra };
}

/** A port outside the kernel's ephemeral range (32768-60999): port 0 never hands it out, nothing here listens on it. */
const CLOSED_PORT = 9;

/** A local command as its npm script runs it; see test/support/processes.ts for how it is ended. */
const run = (script: string, args: string[], env: NodeJS.ProcessEnv): Running =>
  launch(`infra/local/${script}`, args, env);

/** A loopback endpoint that answers every request with `status`: one that refuses everything. */
async function refusingEndpoint(status: number): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(status, { 'content-type': 'text/plain' }).end('refused\n'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
}

describe('local commands', () => {
  it('npm run demo: drains flaky endpoints, prints the summary and exits 0', async () => {
    // The log of an earlier run: each run starts the file afresh.
    writeFileSync(join(logs, 'demo.log'), '{"message":"an earlier run"}\n');
    const demo = run(
      'demo.ts',
      ['--events', '60', '--invalid', '5', '--fault-rate', '0.2', '--log', join(logs, 'demo.log')],
      userEnv(),
    );
    expect(await demo.exited).toBe(0);
    const out = demo.output();
    expect(out).toContain('delivered     analytics 60/60 · audit 60/60 · search 60/60');
    expect(out).toMatch(/dead-letter {3}5\/5 malformed \(5 quarantined by the handler, 0 redriven by SQS\) · 0 valid/);
    expect(out).toMatch(/lost {10}0/);
    const log = readFileSync(join(logs, 'demo.log'), 'utf8');
    expect(log).not.toContain('an earlier run');
    expect(log).toContain('"message":"batch processed"');
  }, 60_000);

  it('npm run demo --endpoints FILE: exits 1 and says why when its own endpoint refuses every event', async () => {
    const file = join(logs, 'refusing.yml');
    writeFileSync(file, `endpoints:\n  - name: mine\n    url: ${await refusingEndpoint(400)}\n`);
    const demo = run(
      'demo.ts',
      ['--events', '5', '--invalid', '1', '--endpoints', file, '--log', join(logs, 'refused.log')],
      userEnv(),
    );
    expect(await demo.exited).toBe(1);
    const out = demo.output();
    expect(out).toMatch(
      /delivered {5}0\/5 acknowledged by the handler and not dead-lettered \(mine: the demo cannot look inside it\)/,
    );
    expect(out).toMatch(/dead-letter {3}1\/1 malformed .* 5 valid/);
    expect(out).toMatch(/lost {10}5/);
    expect(out).toContain('5 valid event(s) dead-lettered: 5 rejected-by-endpoint (mine answered 400)');
  }, 60_000);

  it('npm run demo --endpoints FILE: exits 1 when its own endpoint answers 500 to everything, though the demo endpoint has every event', async () => {
    const file = join(logs, 'failing.yml');
    const endpoints = `  - name: mine\n    url: ${await refusingEndpoint(500)}\n  - name: theirs\n    url: https://theirs.example.com/in\n`;
    writeFileSync(file, `endpoints:\n${endpoints}`);
    const demo = run(
      'demo.ts',
      ['--events', '3', '--invalid', '0', '--fault-rate', '0', '--endpoints', file, '--log', join(logs, 'failing.log')],
      userEnv(),
    );
    expect(await demo.exited).toBe(1);
    const out = demo.output();
    expect(out).toContain('delivered     theirs 3/3');
    expect(out).toMatch(/delivered {5}0\/3 acknowledged by the handler and not dead-lettered \(mine: /);
    expect(out).toMatch(/lost {10}3/);
    expect(out).toContain('3 valid event(s) dead-lettered: 3 out-of-receives');
  }, 90_000);

  it('relative --event, --endpoints and --secrets are files of the folder npm was run from (INIT_CWD)', async () => {
    // npm runs every script from the repository root and says where the user was in INIT_CWD.
    const here = mkdtempSync(join(logs, 'here-'));
    writeFileSync(
      join(here, 'batch.json'),
      JSON.stringify([{ specversion: '1.0', id: 'p-1', source: 'urn:p', type: 't' }]),
    );
    writeFileSync(join(here, 'mine.yml'), 'endpoints:\n  - name: theirs\n    url: https://theirs.example.com/in\n');
    const invoke = run('invoke.ts', ['--event', 'batch.json'], userEnv({ INIT_CWD: here }));
    expect(await invoke.exited).toBe(0);
    expect(invoke.output()).toContain('"batchItemFailures": []');
    const demo = run('demo.ts', ['--endpoints', 'mine.yml', '--secrets', 'nope.yml'], userEnv({ INIT_CWD: here }));
    expect(await demo.exited).toBe(2);
    // Where it looked, in full.
    expect(demo.output()).toContain(`--secrets ${join(here, 'nope.yml')}: cannot read it (ENOENT`);
  }, 60_000);

  it('a misspelt key in the --secrets file is refused, naming the valid ones, not replaced by a generated secret', async () => {
    const here = mkdtempSync(join(logs, 'secrets-'));
    writeFileSync(join(here, 'mine.yml'), 'endpoints:\n  - name: theirs\n    url: https://theirs.example.com/in\n');
    writeFileSync(join(here, 'secrets.yml'), 'secretmanager:\n  ingest/x: do-not-echo-me\n');
    const demo = run('demo.ts', ['--endpoints', 'mine.yml', '--secrets', 'secrets.yml'], userEnv({ INIT_CWD: here }));
    expect(await demo.exited).toBe(2);
    expect(demo.output()).toContain(
      `--secrets ${join(here, 'secrets.yml')}: unknown key 'secretmanager': expected only 'ssm:' and 'secretsmanager:'`,
    );
    expect(demo.output()).not.toContain('do-not-echo-me');
  }, 60_000);

  it("ENDPOINTS and --endpoints FILE both set: refused, naming the user's file", async () => {
    const here = mkdtempSync(join(logs, 'both-'));
    writeFileSync(join(here, 'mine.yml'), 'endpoints:\n  - name: theirs\n    url: https://theirs.example.com/in\n');
    const env = userEnv({ INIT_CWD: here, ENDPOINTS: 'x=https://x.example.com/in' });
    const demo = run('demo.ts', ['--endpoints', 'mine.yml', '--events', '1', '--invalid', '0'], env);
    expect(await demo.exited).toBe(2);
    expect(demo.output()).toContain(`ENDPOINTS is set and so is --endpoints ${join(here, 'mine.yml')}: keep one list`);
  }, 60_000);

  it('npm run demo: exits 1 when it cannot drain within the time limit', async () => {
    // Nothing listens on port 9: no event can ever be delivered.
    const demo = run(
      'demo.ts',
      ['--events', '5', '--invalid', '0', '--time-limit', '2', '--log', join(logs, 'stuck.log')],
      userEnv({ ENDPOINTS: `nowhere=http://127.0.0.1:${CLOSED_PORT}/events` }),
    );
    expect(await demo.exited).toBe(1);
    expect(demo.output()).toContain('NOT drained');
    expect(demo.output()).toContain('could not drain within 2 s');
  }, 60_000);

  it('npm start + npm run send: events flow to the endpoints; SIGINT stops it cleanly', async () => {
    // Port 0: the stack picks a free port itself and prints it (a port closed here and reused could be taken).
    const start = run('start.ts', ['--port', '0', '--log', join(logs, 'start.log')], userEnv());
    try {
      await waitForOutput(start, /Send events from another terminal/);
      const port = (await waitForOutput(start, /SQS {8}http:\/\/127\.0\.0\.1:(\d+)/))[1]!;
      const env = userEnv({ LOCAL_SQS_PORT: port });

      // send finds the running stack through LOCAL_SQS_PORT, like a second terminal would.
      const send = run('send.ts', ['--count', '30', '--invalid', '3'], env);
      expect(await send.exited).toBe(0);
      expect(send.output()).toContain(`sent 30 CloudEvent(s) and 3 malformed message(s) to http://127.0.0.1:${port}/`);

      await waitForOutput(start, /acknowledged=33 .*analytics=30\(\+\d+dup\) audit=30\(\+\d+dup\) search=30/);
      start.child.kill('SIGINT');
      expect(await start.exited).toBe(0);
      expect(start.output()).toContain('stopping: waiting for running invocations');
      expect(start.output()).toMatch(/dlq=3 .*quarantined=3/);
      expect(start.output()).toMatch(
        /stopped after \d+ s: \d+ received · \d+ acknowledged · 3 in the DLQ · 0 still queued/,
      );
    } finally {
      start.child.kill('SIGKILL');
    }
  }, 60_000);

  it('one hand-written event into a running npm start: send --body, send --file, and aws sqs send-message', async () => {
    const start = run('start.ts', ['--port', '0', '--log', join(logs, 'own.log')], userEnv());
    await waitForOutput(start, /Send events from another terminal/);
    const port = (await waitForOutput(start, /SQS {8}http:\/\/127\.0\.0\.1:(\d+)/))[1]!;
    const here = mkdtempSync(join(logs, 'own-'));
    const own = (id: string) =>
      JSON.stringify({ specversion: '1.0', id, source: 'urn:example:me', type: 'com.example.test' });
    writeFileSync(join(here, 'event.json'), own('mine-2'));
    const env = userEnv({ LOCAL_SQS_PORT: port, INIT_CWD: here });
    const byBody = run('send.ts', ['--body', own('mine-1')], env);
    expect(await byBody.exited).toBe(0);
    expect(byBody.output()).toMatch(/sent 1 message \(message id \S+, \d+ characters\)/);
    const byFile = run('send.ts', ['--file', 'event.json'], env);
    expect(await byFile.exited).toBe(0);
    // docs/local.md shows the aws CLI form too, for those who have it; run it where it is installed.
    const aws = spawnSync('aws', ['--version']).status === 0;
    if (aws) {
      const queue = `http://127.0.0.1:${port}/123456789012/ingest-events`;
      const args = ['sqs', 'send-message', '--region', 'us-east-1', '--endpoint-url', `http://127.0.0.1:${port}`];
      const sent = spawnSync('aws', [...args, '--queue-url', queue, '--message-body', 'file://event.json'], {
        cwd: here,
        env: { ...envWithoutAws(), AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' },
        encoding: 'utf8',
      });
      expect(sent.status, sent.stderr).toBe(0);
    }
    const total = aws ? 3 : 2;
    // The same event (mine-2) twice is two messages, one event to the endpoints.
    await waitForOutput(start, new RegExp(`acknowledged=${total} .*analytics=2\\(\\+${total - 2}dup\\)`));
  }, 60_000);

  it('Ctrl-C in npm run send stops sending and says how many messages SQS took', async () => {
    const sqs = new SQSClient({
      endpoint: inject('sqsEndpoint'),
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    onTestFinished(() => sqs.destroy());
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `interrupted-send-${Date.now()}` }));
    const send = run('send.ts', ['--queue-url', QueueUrl!, '--count', '100000'], userEnv());
    await waitForOutput(send, /sending 100000 message\(s\)/);
    send.child.kill('SIGINT');
    expect(await send.exited).toBe(130);
    const sent = Number(send.output().match(/interrupted: sent (\d+) of 100000 message\(s\)/)?.[1]);
    const { Attributes } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }),
    );
    expect(Number(Attributes?.ApproximateNumberOfMessages)).toBe(sent);
    expect(sent).toBeLessThan(100000);
  }, 60_000);

  it('Ctrl-C in npm run demo prints the partial summary', async () => {
    const demo = run(
      'demo.ts',
      ['--events', '5', '--invalid', '1', '--log', join(logs, 'interrupted.log')],
      userEnv({ ENDPOINTS: `nowhere=http://127.0.0.1:${CLOSED_PORT}/events` }),
    );
    await waitForOutput(demo, /sent 5 valid \+ 1 malformed messages/);
    demo.child.kill('SIGINT');
    expect(await demo.exited).toBe(130);
    expect(demo.output()).toContain('NOT drained');
    expect(demo.output()).toMatch(/sent {10}5 valid CloudEvents \+ 1 malformed messages/);
    expect(demo.output()).toContain(
      'interrupted (Ctrl-C) after sending 6 of 6 message(s): the summary above is partial',
    );
  }, 60_000);

  it('npm run send explains what to do when no local stack is running', async () => {
    const send = run('send.ts', ['--count', '1'], userEnv({ LOCAL_SQS_PORT: String(CLOSED_PORT) }));
    expect(await send.exited).toBe(1);
    expect(send.output()).toContain(
      'start the local stack first (`npm start` in another terminal), or pass --queue-url',
    );
  }, 30_000);
});
