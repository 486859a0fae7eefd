import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { CLOSED_PORT, runLocal, stillRunning, userEnv, waitForOutput } from '../support/processes';

// `npm run demo` as a user runs it: its verdict, its summary, its exit code (start and send: start-send.test.ts).
const logs = mkdtempSync(join(tmpdir(), 'ingest-local-'));

afterAll(async () => {
  rmSync(logs, { recursive: true, force: true });
  // Every process a test started has ended with it (on a shared machine, leftovers pile up).
  expect(await stillRunning()).toEqual([]);
});

const run = runLocal;

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

  it('npm run demo --outage (README): one endpoint down, the others keep receiving, its backlog drains from its lane, nothing lost', async () => {
    // The README's command (lanes are on by default), with a log file of its own.
    const demo = run(
      'demo.ts',
      [
        ...['--events', '300', '--invalid', '0', '--fault-rate', '0', '--outage', 'audit:8s'],
        ...['--inflight-ceiling', '100', '--log', join(logs, 'outage.log')],
      ],
      userEnv(),
    );
    expect(await demo.exited).toBe(0);
    const out = demo.output();
    expect(out).toContain('delivered     analytics 300/300 · audit 300/300 · search 300/300');
    expect(out).toMatch(/lost {10}0/);
    // During the outage the down endpoint got nothing and the healthy ones kept receiving.
    expect(out).toMatch(/audit +0 events during the outage/);
    for (const healthy of ['analytics', 'search']) {
      expect(Number(out.match(new RegExp(`${healthy} +(\\d+) events during the outage`))?.[1])).toBeGreaterThan(0);
    }
    // What audit refused waited in its own lane.
    expect(Number(out.match(/ingest-events-lane-audit +(\d+)/)?.[1])).toBeGreaterThan(0);
  }, 180_000);

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
    // The handler's quarantine count covers the valid events too: it follows both counts, not '1/1 malformed'.
    expect(out).toContain('dead-letter   1/1 malformed · 5 valid (6 quarantined by the handler, 0 redriven by SQS)');
    expect(out).toMatch(/lost {10}5/);
    expect(out).toContain('5 valid event(s) dead-lettered: 5 rejected-by-endpoint (mine answered 400)');
  }, 60_000);

  it('npm run demo --endpoints FILE: exits 1 when its own endpoint answers 500 to everything, though the demo endpoint has every event', async () => {
    const file = join(logs, 'failing.yml');
    const endpoints = `  - name: mine\n    url: ${await refusingEndpoint(500)}\n  - name: theirs\n    url: https://theirs.example.com/in\n`;
    writeFileSync(file, `endpoints:\n${endpoints}`);
    const demo = run(
      'demo.ts',
      [
        ...['--events', '3', '--invalid', '0', '--fault-rate', '0', '--endpoints', file],
        // Without lanes, so the events stay on the source queue until SQS dead-letters them.
        ...['--no-lanes', '--log', join(logs, 'failing.log')],
      ],
      // Backoff of 1 s at most: SQS dead-letters the events after their 5 receives within seconds.
      userEnv({ RETRY_MAX_DELAY_S: '1' }),
    );
    expect(await demo.exited).toBe(1);
    const out = demo.output();
    expect(out).toContain('delivered     theirs 3/3');
    expect(out).toMatch(/delivered {5}0\/3 acknowledged by the handler and not dead-lettered \(mine: /);
    expect(out).toMatch(/lost {10}3/);
    expect(out).toContain('3 valid event(s) dead-lettered: 3 out-of-receives');
  }, 90_000);

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
});
