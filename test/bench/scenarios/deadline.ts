/**
 * Figure 3: the invocation has 3 s left and one endpoint never answers. When does the answer come, against the
 * deadline? In-process with logs off, and in a fresh process on the bundle with logs and metrics on, as deployed
 * (every undelivered record then writes a log line before the answer).
 */
import type { Bundles } from '../bundles';
import { type EndpointFleet, NEVER } from '../fleet';
import { RunnerHost } from '../hostProcess';
import { after, type BenchOptions, log, timedRun } from '../measure';
import { type Summary, summarize } from '../stats';
import { hostSpec, LABELS, LOGS_ON_ENV } from '../subject';

export const DEADLINE_MS = 3000;
export const DEADLINE_SPARE_TARGET_MS = 200;
const NEXT_EVENTS = 100;
const NEXT_TIMEOUT_MS = 5000;

export interface DeadlineRow {
  label: string;
  events: number;
  /** Time to the answer; absent when no answer came before the deadline. */
  ms?: Summary;
  /** Deadline minus time to the answer: the smallest over the runs is what the target is about. */
  spareMs?: Summary;
  /** Records reported failed (every one should be: the silent endpoint has none of them). */
  failed?: number;
  /** Every run's POSTs to the endpoints that do answer reached them. */
  othersServed?: boolean;
  /** Runs in which the handler threw instead of answering, with the first error. */
  errors?: { count: number; first: string };
  /** The next invocation on the same instance (100 events, every endpoint answering at once), per run. */
  next?: { answered: number; runs: number; ms?: Summary; firstError?: string };
  logBytes?: number;
  note?: string;
}

const NEVER_FIRST = (fleet: EndpointFleet) => fleet.urls.map((_, i) => (i === 0 ? NEVER : 0));

interface Collected {
  times: number[];
  failed: number;
  othersServed: boolean;
  errors: string[];
  logBytes: number;
  next: { ms: number; error?: string; failed: number }[];
}

async function once(fleet: EndpointFleet, host: RunnerHost, events: number, into: Collected): Promise<void> {
  await fleet.reset();
  await fleet.delays(NEVER_FIRST(fleet));
  const output = host.outputBytes;
  const result = await timedRun(host, fleet, events, DEADLINE_MS);
  into.times.push(result.ms);
  into.failed = Math.max(into.failed, result.failed);
  if (result.error) into.errors.push(result.error);
  const stats = await fleet.stats();
  into.othersServed &&= stats.slice(1, fleet.urls.length).every((s) => s.requests === events);
  into.logBytes = Math.max(into.logBytes, host.outputBytes - output);
}

function row(label: string, events: number, c: Collected, withLogs: boolean): DeadlineRow {
  return {
    label,
    events,
    ms: summarize(c.times),
    spareMs: summarize(c.times.map((t) => DEADLINE_MS - t)),
    failed: c.failed,
    othersServed: c.othersServed,
    ...(withLogs ? { logBytes: c.logBytes } : {}),
    ...(c.errors.length > 0 ? { errors: { count: c.errors.length, first: c.errors[0]! } } : {}),
    ...(c.next.length > 0 ? { next: nextSummary(c.next) } : {}),
  };
}

function nextSummary(next: Collected['next']): NonNullable<DeadlineRow['next']> {
  const ok = next.filter((r) => !r.error && r.failed === 0);
  const firstError = next.find((r) => r.error)?.error;
  return {
    answered: ok.length,
    runs: next.length,
    ...(ok.length > 0 ? { ms: summarize(ok.map((r) => r.ms)) } : {}),
    ...(firstError ? { firstError } : {}),
  };
}

const collected = (): Collected => ({ times: [], failed: 0, othersServed: true, errors: [], logBytes: 0, next: [] });

/** After the deadline: does the same instance still serve the next batch? */
async function nextInvocation(fleet: EndpointFleet, host: RunnerHost, into: Collected): Promise<void> {
  await fleet.reset();
  await fleet.delays(fleet.urls.map(() => 0));
  const run = await host.run(NEXT_EVENTS, NEXT_TIMEOUT_MS);
  into.next.push({ ms: run.ms, failed: run.failed, ...(run.error ? { error: run.error } : {}) });
}

/** A peer has no deadline: it either answers in time or Lambda kills the invocation and the whole batch comes back. */
async function peerRow(fleet: EndpointFleet, peer: RunnerHost, events: number): Promise<DeadlineRow> {
  await fleet.reset();
  await fleet.delays(NEVER_FIRST(fleet));
  const pending = peer.run(events, DEADLINE_MS);
  const timeout = after(DEADLINE_MS + 500, undefined);
  const answered = await Promise.race([pending, timeout.promise]);
  timeout.cancel();
  // Closing the silent endpoint's connections lets the peer's requests fail and its invocation end.
  await fleet.reset();
  const run = answered ?? (await pending);
  if (run.ms <= DEADLINE_MS) {
    return { label: peer.label, events, ms: summarize([run.ms]), spareMs: summarize([DEADLINE_MS - run.ms]) };
  }
  return {
    label: peer.label,
    events,
    note: 'no answer before the deadline: Lambda times out and the whole batch comes back, delivered records included',
  };
}

export async function deadline(
  fleet: EndpointFleet,
  runners: RunnerHost[],
  bundles: Bundles,
  options: BenchOptions,
): Promise<DeadlineRow[]> {
  const others = runners.slice(1);
  const rows: DeadlineRow[] = [];
  // Each run starts a fresh process and waits out a 3 s deadline: three runs are enough to show the spread.
  const runs = Math.min(options.runs, 3);
  // A fresh instance per run (what one run leaves behind must not decide the next), warmed by one ordinary batch.
  for (const events of [100, 2000]) {
    const c = collected();
    for (let i = 0; i < runs; i++) {
      const host = await RunnerHost.start(hostSpec('handler', bundles, fleet));
      try {
        await fleet.reset();
        await fleet.delays(fleet.urls.map(() => 0));
        await host.run(events);
        await once(fleet, host, events, c);
        await nextInvocation(fleet, host, c);
      } finally {
        await host.close();
      }
    }
    rows.push(row(`${LABELS.handler}, warm, logs off`, events, c, false));
  }
  // As deployed: logs at INFO and EMF metrics on, first invocation of a fresh instance.
  for (const events of [100, 2000]) {
    const c = collected();
    for (let i = 0; i < runs; i++) {
      const host = await RunnerHost.start(hostSpec('handler', bundles, fleet, LOGS_ON_ENV));
      try {
        await once(fleet, host, events, c);
      } finally {
        await host.close();
      }
    }
    rows.push(row(`${LABELS.handler}, cold, logs + metrics on`, events, c, true));
  }
  for (const peer of others.filter((r) => r.id === 'naive' || r.id === 'powertools')) {
    rows.push(await peerRow(fleet, peer, 100));
  }
  for (const r of rows) {
    log(
      `  ${r.label} × ${r.events}: ${r.ms ? `${r.ms.median.toFixed(0)} ms, spare ≥ ${r.spareMs?.min.toFixed(0)} ms${r.errors ? `, threw ${r.errors.count}×` : ''}` : r.note}${r.next ? `; next batch answered ${r.next.answered}/${r.next.runs}` : ''}`,
    );
  }
  return rows;
}
