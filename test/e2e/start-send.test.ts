import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { envWithoutAws } from '../support/cli';
import { CLOSED_PORT, runLocal, stillRunning, userEnv, waitForOutput } from '../support/processes';

// `npm start`, `npm run send` and the files the local commands read, as a user runs them.
const logs = mkdtempSync(join(tmpdir(), 'ingest-start-'));
const run = runLocal;

afterAll(async () => {
  rmSync(logs, { recursive: true, force: true });
  // Every process a test started has ended with it (on a shared machine, leftovers pile up).
  expect(await stillRunning()).toEqual([]);
});

describe("npm start, npm run send and the local commands' files", () => {
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

  it('a --secrets file that is not valid YAML is refused with the line, never quoting the secret on it', async () => {
    const here = mkdtempSync(join(logs, 'yaml-'));
    writeFileSync(join(here, 'mine.yml'), 'endpoints:\n  - name: theirs\n    url: https://theirs.example.com/in\n');
    // A password holding ': ' is not a plain YAML scalar: the YAML parser's own message quotes the line.
    writeFileSync(join(here, 'secrets.yml'), 'ssm:\n  /x: do-not: echo-me\n');
    const demo = run('demo.ts', ['--endpoints', 'mine.yml', '--secrets', 'secrets.yml'], userEnv({ INIT_CWD: here }));
    expect(await demo.exited).toBe(2);
    expect(demo.output()).toContain(`--secrets ${join(here, 'secrets.yml')}: not valid YAML at line 2, column 7: `);
    expect(demo.output()).not.toContain('echo-me');
  }, 60_000);

  it("ENDPOINTS and --endpoints FILE both set: refused, naming the user's file", async () => {
    const here = mkdtempSync(join(logs, 'both-'));
    writeFileSync(join(here, 'mine.yml'), 'endpoints:\n  - name: theirs\n    url: https://theirs.example.com/in\n');
    const env = userEnv({ INIT_CWD: here, ENDPOINTS: 'x=https://x.example.com/in' });
    const demo = run('demo.ts', ['--endpoints', 'mine.yml', '--events', '1', '--invalid', '0'], env);
    expect(await demo.exited).toBe(2);
    expect(demo.output()).toContain(`ENDPOINTS is set and so is --endpoints ${join(here, 'mine.yml')}: keep one list`);
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

  it('Ctrl-C in npm start while an invocation runs: the summary counts what that invocation acknowledged', async () => {
    // An endpoint that holds the request until the test lets it answer.
    let release = () => {};
    const answered = new Promise<void>((resolve) => {
      release = resolve;
    });
    const server = http.createServer((req, res) => {
      req.resume();
      void answered.then(() => res.writeHead(202).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => {
      release();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const held = `held=http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
    const start = run('start.ts', ['--port', '0', '--log', join(logs, 'held.log')], userEnv({ ENDPOINTS: held }));
    const port = (await waitForOutput(start, /SQS {8}http:\/\/127\.0\.0\.1:(\d+)/))[1]!;
    const waiting = new Promise((resolve) => server.once('request', resolve));
    const send = run('send.ts', ['--count', '1'], userEnv({ LOCAL_SQS_PORT: port }));
    expect(await send.exited).toBe(0);
    await waiting;
    start.child.kill('SIGINT');
    await waitForOutput(start, /stopping: waiting for running invocations/);
    release();
    expect(await start.exited).toBe(0);
    expect(start.output()).toMatch(/stopped after \d+ s: 1 received · 1 acknowledged · 0 in the DLQ · 0 still queued/);
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

  it('npm run send -- --body "" (an unset shell variable) is refused, not taken as "send 100 sample events"', async () => {
    const send = run('send.ts', ['--body', ''], userEnv({ LOCAL_SQS_PORT: String(CLOSED_PORT) }));
    expect(await send.exited).toBe(2);
    expect(send.output()).toContain('--body is empty');
    const file = run('send.ts', ['--file', ''], userEnv({ LOCAL_SQS_PORT: String(CLOSED_PORT) }));
    expect(await file.exited).toBe(2);
    expect(file.output()).toContain('--file is empty');
  }, 30_000);

  it('npm run send explains what to do when no local stack is running', async () => {
    const send = run('send.ts', ['--count', '1'], userEnv({ LOCAL_SQS_PORT: String(CLOSED_PORT) }));
    expect(await send.exited).toBe(1);
    expect(send.output()).toContain(
      'start the local stack first (`npm start` in another terminal), or pass --queue-url',
    );
  }, 30_000);
});
