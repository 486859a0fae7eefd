import type { EndpointFleet } from './fleet';
import type { RunnerHost } from './hostProcess';

export interface BenchOptions {
  quick: boolean;
  /** Measured runs per cell (after one warm-up run). */
  runs: number;
}

export interface RunResult {
  ms: number;
  /** Records reported in batchItemFailures (all of them when the handler threw). */
  failed: number;
  /** POSTs the endpoints received during the run. */
  requests: number;
  /** The handler threw instead of answering (Lambda then retries the whole batch): the error's name and message. */
  error?: string;
  /** Process CPU time of the runner during the call, µs. */
  cpuUs: number;
}

/** One invocation in the runner's process: a fresh batch of `n` events, timed there from the call to the answer. */
export async function timedRun(
  host: RunnerHost,
  fleet: EndpointFleet,
  n: number,
  timeoutMs = 900_000,
): Promise<RunResult> {
  const before = await fleet.stats();
  const run = await host.run(n, timeoutMs);
  const after = await fleet.stats();
  const requests = after.reduce((sum, s, i) => sum + s.requests - (before[i]?.requests ?? 0), 0);
  return { ms: run.ms, failed: run.failed, requests, cpuUs: run.cpuUs, ...(run.error ? { error: run.error } : {}) };
}

/** Resolves after `ms` with the value given; `cancel` clears the timer. */
export function after<T>(ms: number, value: T): { promise: Promise<T>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(value), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

const started = Date.now();

/** Progress on stderr, with the seconds since the bench started. */
export function log(message: string): void {
  const s = Math.round((Date.now() - started) / 1000);
  process.stderr.write(`[${String(s).padStart(4)} s] ${message}\n`);
}
