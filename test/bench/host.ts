/**
 * A runner host: one process holding one runner (the handler bundle, a peer or a floor), like one warm Lambda
 * instance. Each runner gets its own process so that none pays for another's global side effects (the handler's
 * X-Ray import installs async hooks for the whole process, for example). Driven over IPC by RunnerHost
 * (hostProcess.ts); bundled with its runner by bundles.ts and run on Node 24 when installed.
 */
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { lambdaContext, sqsEvent } from './events';

export type HostHandle = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export type HostCommand =
  | { id: number; op: 'run'; events: number; timeoutMs: number }
  | { id: number; op: 'profile'; events: number; runs: number; intervalUs: number }
  | { id: number; op: 'memory' };

export interface HostRun {
  ms: number;
  /** Records in batchItemFailures; every record when the handler threw. */
  failed: number;
  /** The handler threw instead of answering (Lambda then retries the whole batch). */
  error?: string;
  /** Process CPU time (user + system) during the call, µs. */
  cpuUs: number;
  /** Bytes of the invocation payload, as Lambda hands it over. */
  payloadBytes: number;
}

export interface HostMemory {
  /** RSS once the module was loaded, before any batch. */
  baselineRssKiB: number;
  /** Peak RSS of the process so far (VmHWM). */
  peakRssKiB: number;
}

export type HostReply =
  | { type: 'ready' }
  | { type: 'run'; id: number; run: HostRun }
  | { type: 'profile'; id: number; profile: unknown }
  | { type: 'memory'; id: number; memory: HostMemory };

export function urlsFromEnv(): string[] {
  const urls = process.env.BENCH_URLS?.split(',').filter(Boolean) ?? [];
  if (urls.length === 0) throw new Error('BENCH_URLS: set the endpoint URLs, comma-separated');
  return urls;
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** The runtime hands the handler a parsed copy of a JSON payload; so does this. */
function invocationPayload(events: number): { event: SQSEvent; bytes: number } {
  const payload = JSON.stringify(sqsEvent(events));
  return { event: JSON.parse(payload) as SQSEvent, bytes: Buffer.byteLength(payload) };
}

async function run(handle: HostHandle, events: number, timeoutMs: number): Promise<HostRun> {
  const { event, bytes } = invocationPayload(events);
  // A full collection first, so one run's garbage is not collected on the next one's clock.
  gc();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let failed = events;
  let error: string | undefined;
  try {
    failed = (await handle(event, lambdaContext(timeoutMs))).batchItemFailures.length;
  } catch (thrown) {
    error = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
  }
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { ms, failed, cpuUs: used.user + used.system, payloadBytes: bytes, ...(error ? { error } : {}) };
}

async function profile(handle: HostHandle, events: number, runs: number, intervalUs: number): Promise<unknown> {
  const batches = Array.from({ length: runs }, () => invocationPayload(events).event);
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
    gc();
    await session.post('Profiler.start');
    for (const batch of batches) await handle(batch, lambdaContext(900_000));
    const { profile } = await session.post('Profiler.stop');
    await session.post('Profiler.disable');
    return profile;
  } finally {
    session.disconnect();
  }
}

function peakRssKiB(): number {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS;
}

/** Serves commands one at a time until the parent disconnects. */
export function serve(handle: HostHandle): void {
  const baselineRssKiB = Math.round(process.memoryUsage.rss() / 1024);
  const send = (reply: HostReply) => process.send?.(reply);
  let queue = Promise.resolve();
  process.on('message', (command: HostCommand) => {
    queue = queue.then(async () => {
      switch (command.op) {
        case 'run':
          send({ type: 'run', id: command.id, run: await run(handle, command.events, command.timeoutMs) });
          break;
        case 'profile': {
          const result = await profile(handle, command.events, command.runs, command.intervalUs);
          send({ type: 'profile', id: command.id, profile: result });
          break;
        }
        case 'memory':
          send({ type: 'memory', id: command.id, memory: { baselineRssKiB, peakRssKiB: peakRssKiB() } });
          break;
      }
    });
  });
  // Connections the handler keeps alive would hold the process open: leave when the parent does.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}
