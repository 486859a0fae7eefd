import { UsageError } from './cli';
import type { DemoEndpoint, FaultPlan } from './demo-endpoints';
import type { LocalStack } from './stack';

/** One demo endpoint down (every request answered 5xx) for a while. */
export interface Outage {
  endpoint: string;
  durationS: number;
}

/** `audit:60s` (or `audit:60`): the endpoint's name and how long it is down. */
export function parseOutage(raw: string, endpoints: readonly string[]): Outage {
  const match = /^([a-z0-9][a-z0-9-]*):(\d+)s?$/.exec(raw.trim());
  if (!match) throw new UsageError(`--outage must be <endpoint>:<seconds>s, e.g. audit:60s (got '${raw}')`);
  const [, endpoint = '', seconds = '0'] = match;
  if (!endpoints.includes(endpoint)) {
    throw new UsageError(`--outage ${raw}: no demo endpoint '${endpoint}' (the demo runs ${endpoints.join(', ')})`);
  }
  const durationS = Number(seconds);
  if (durationS < 1 || durationS > 86_400) {
    throw new UsageError(`--outage ${raw}: the outage lasts 1 to 86400 s`);
  }
  return { endpoint, durationS };
}

export interface OutageReport {
  outage: Outage;
  /** How long it really lasted (shorter when the run ended first). */
  lastedMs: number;
  /** Per endpoint: distinct events it accepted while the outage lasted, and that per second. */
  endpoints: { name: string; events: number; perSecond: number }[];
  /** The largest in-flight count each mapping saw on its queue: the source queue, then every lane. */
  maxInFlight: { queue: string; maxInFlight: number; ceilingHits: number }[];
}

const DOWN: FaultPlan = { rate: 1, kinds: ['error'] };

/** Takes one demo endpoint down now, brings it back after the outage, and measures the others meanwhile. */
export class OutageWindow {
  readonly #stack: LocalStack;
  readonly #outage: Outage;
  readonly #down: DemoEndpoint;
  readonly #before: FaultPlan;
  readonly #startedAt = Date.now();
  readonly #atStart: Map<string, number>;
  #atEnd: Map<string, number> | undefined;
  #endedAt: number | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(stack: LocalStack, outage: Outage, onEnd?: () => void) {
    const list = stack.demo?.list ?? [];
    const down = list.find((endpoint) => endpoint.name === outage.endpoint);
    if (!down) throw new UsageError(`--outage needs the demo endpoint '${outage.endpoint}'`);
    this.#stack = stack;
    this.#outage = outage;
    this.#down = down;
    this.#before = down.faults;
    this.#atStart = this.#counts();
    down.setFaults(DOWN);
    this.#timer = setTimeout(() => {
      this.end();
      onEnd?.();
    }, outage.durationS * 1000);
  }

  #counts(): Map<string, number> {
    return new Map((this.#stack.demo?.list ?? []).map((endpoint) => [endpoint.name, endpoint.stats.unique]));
  }

  /** Brings the endpoint back (at the latest when the run ends). */
  end(): void {
    if (this.#endedAt !== undefined) return;
    clearTimeout(this.#timer);
    this.#endedAt = Date.now();
    this.#atEnd = this.#counts();
    this.#down.setFaults(this.#before);
  }

  get over(): boolean {
    return this.#endedAt !== undefined;
  }

  report(): OutageReport {
    const lastedMs = (this.#endedAt ?? Date.now()) - this.#startedAt;
    const atEnd = this.#atEnd ?? this.#counts();
    const endpoints = [...this.#atStart].map(([name, start]) => {
      const events = (atEnd.get(name) ?? start) - start;
      return { name, events, perSecond: lastedMs > 0 ? events / (lastedMs / 1000) : 0 };
    });
    const { sqs, eventSource, lanes } = this.#stack;
    const sources = [
      { queue: sqs.queue.name, stats: eventSource.stats },
      ...[...lanes.values()].map((lane) => ({ queue: lane.queue.name, stats: lane.eventSource.stats })),
    ];
    const maxInFlight = sources.map(({ queue, stats }) => ({
      queue,
      maxInFlight: stats.maxInFlight,
      ceilingHits: stats.ceilingHits,
    }));

    return { outage: this.#outage, lastedMs, endpoints, maxInFlight };
  }
}

export function outageLines(report: OutageReport, ceiling: number | undefined): string[] {
  const { outage } = report;
  return [
    `outage: ${outage.endpoint} down (5xx) for ${(report.lastedMs / 1000).toFixed(1)} s of ${outage.durationS} s asked`,
    ...report.endpoints.map(
      (e) =>
        `  ${e.name.padEnd(12)} ${String(e.events).padStart(7)} events during the outage · ${e.perSecond.toFixed(1)}/s${e.name === outage.endpoint ? ' (down)' : ''}`,
    ),
    `largest in-flight count per queue${ceiling ? ` (ceiling ${ceiling})` : ''}:`,
    ...report.maxInFlight.map(
      (q) =>
        `  ${q.queue.padEnd(32)} ${String(q.maxInFlight).padStart(7)} · ${q.ceilingHits} receive(s) empty at the ceiling`,
    ),
  ];
}
