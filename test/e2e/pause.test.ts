import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { launch, runLocal, stillRunning, userEnv, waitForOutput } from '../support/processes';

// `npm start`, `npm run send` and `npm run endpoint -- … --local`, as a user runs them in three terminals.
const logs = mkdtempSync(join(tmpdir(), 'ingest-pause-'));

afterAll(async () => {
  rmSync(logs, { recursive: true, force: true });
  expect(await stillRunning()).toEqual([]);
});

const endpointCli = async (args: string[], port: string) => {
  const cli = launch('infra/cli/endpoint.ts', [...args, '--local'], userEnv({ LOCAL_SQS_PORT: port }));
  const code = await cli.exited;
  return { code, output: cli.output() };
};
const ids = (endpoint: TestEndpoint) => new Set(endpoint.received.map((request) => request.eventId));

describe('pausing an endpoint of the local stack', () => {
  it('its events wait in its lane while the other gets them; resumed, the backlog drains to it', async () => {
    const [alpha, beta] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
    try {
      const endpoints = `alpha=${alpha!.url},beta=${beta!.url}`;
      const start = runLocal(
        'start.ts',
        ['--port', '0', '--lanes', '--log', join(logs, 'start.log')],
        userEnv({ ENDPOINTS: endpoints }),
      );
      const port = (await waitForOutput(start, /SQS {8}http:\/\/127\.0\.0\.1:(\d+)/))[1]!;
      await waitForOutput(start, /Send events from another terminal/);

      const paused = await endpointCli(['pause', 'beta'], port);
      expect(paused.code, paused.output).toBe(0);
      const send = runLocal('send.ts', ['--count', '20'], userEnv({ LOCAL_SQS_PORT: port }));
      expect(await send.exited).toBe(0);

      await pollUntil('alpha has all 20', async () => (ids(alpha!).size === 20 ? true : undefined), {
        timeoutMs: 60_000,
      });
      // Parked, not delivered: the lane holds all 20 (visible, or delayed when the lane read one before the pause).
      const status = await pollUntil(
        'the 20 in beta’s lane',
        async () => {
          const { output } = await endpointCli(['status', 'beta'], port);
          const [, visible, delayed] = /backlog: (\d+) visible · (\d+) delayed/.exec(output) ?? [];
          return Number(visible) + Number(delayed) === 20 ? output : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      expect(status).toMatch(/endpoint beta: paused since \S+ by \S+/);
      expect(beta!.received).toEqual([]);

      const resumed = await endpointCli(['resume', 'beta'], port);
      expect(resumed.code, resumed.output).toBe(0);
      // A record the lane read before it saw the tag comes back after the 60 s re-delay, hence the long bound.
      await pollUntil('beta has all 20', async () => (ids(beta!).size === 20 ? true : undefined), {
        timeoutMs: 120_000,
        intervalMs: 250,
      });
      expect([...ids(beta!)].sort()).toEqual([...ids(alpha!)].sort());
      start.child.kill('SIGINT');
      expect(await start.exited).toBe(0);
    } finally {
      await Promise.all([alpha!.close(), beta!.close()]);
    }
  }, 240_000);
});
