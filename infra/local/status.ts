import type { DemoEndpoint, EndpointStats } from './demo-endpoints';
import type { EventSourceStats } from './event-source';
import type { HandlerTelemetry } from './handler-output';
import type { QueueDepth } from './sqs-server';

export interface StatusSnapshot {
  uptimeMs: number;
  pollers: number;
  queue: { name: string; depth: QueueDepth };
  dlq: { name: string; depth: QueueDepth };
  mapping: EventSourceStats;
  /** The demo endpoints' own counts (absent when ENDPOINTS points elsewhere). */
  endpoints?: { name: string; stats: EndpointStats }[];
  /** Sums of the handler's metrics (absent when metrics are off). */
  handler?: HandlerTelemetry;
  /** Each endpoint's lane: its depth, and the largest in-flight count its mapping saw. */
  lanes?: LaneStatus[];
}

export interface LaneStatus {
  endpoint: string;
  depth: QueueDepth;
  maxInFlight: number;
}

export function endpointStats(list: DemoEndpoint[]): { name: string; stats: EndpointStats }[] {
  return list.map((endpoint) => ({ name: endpoint.name, stats: endpoint.stats }));
}

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

function total(depth: QueueDepth): number {
  return depth.visible + depth.inFlight + depth.delayed;
}

function metric(handler: HandlerTelemetry | undefined, name: string): number {
  return handler?.metrics[name] ?? 0;
}

/** An endpoint's backlog: what waits in its lane, due or delayed, and what the lane's mapping holds. */
export function laneBacklog(lane: LaneStatus): number {
  return total(lane.depth);
}

function laneLines(lanes: LaneStatus[]): string[] {
  const width = Math.max(12, ...lanes.map((lane) => lane.endpoint.length + 1));
  return lanes.map((lane) => {
    const d = lane.depth;
    return `  lane     ${lane.endpoint.padEnd(width)} backlog ${laneBacklog(lane)} · visible ${d.visible} · delayed ${d.delayed} · in flight ${d.inFlight} (max ${lane.maxInFlight})`;
  });
}

/** The multi-line panel shown on a terminal. */
export function formatPanel(s: StatusSnapshot): string[] {
  const m = s.mapping;
  const lines = [
    `ingest-fanout (local) · up ${clock(s.uptimeMs)} · ${s.pollers} poller(s) · ${m.running} invocation(s) running`,
    `  queue    ${s.queue.name.padEnd(20)} visible ${s.queue.depth.visible} · in flight ${s.queue.depth.inFlight} (max ${m.maxInFlight}) · delayed ${s.queue.depth.delayed}`,
    ...laneLines(s.lanes ?? []),
    `  DLQ      ${s.dlq.name.padEnd(20)} messages ${total(s.dlq.depth)}`,
    `  mapping  invocations ${m.invocations} · received ${m.received} · acknowledged ${m.acknowledged} · failed ${m.failed} · redelivered ${m.redelivered} · errors ${m.errors} · timeouts ${m.timeouts}`,
  ];
  if (s.handler) {
    const h = s.handler;
    lines.push(
      `  handler  invalid ${metric(h, 'RecordsInvalid')} · quarantined ${metric(h, 'RecordsQuarantined')} · deadline aborts ${metric(h, 'DeadlineAborts')} · quarantine errors ${metric(h, 'QuarantineErrors')} · backoff errors ${metric(h, 'BackoffErrors')}`,
    );
  }
  if (s.endpoints) {
    lines.push(
      `  ${'endpoint'.padEnd(12)}${'accepted'.padStart(9)}${'unique'.padStart(9)}${'dupes'.padStart(7)}  faults`,
    );
    for (const { name, stats } of s.endpoints) {
      const f = stats.faults;
      lines.push(
        `  ${name.padEnd(12)}${String(stats.accepted).padStart(9)}${String(stats.unique).padStart(9)}${String(stats.duplicates).padStart(7)}  5xx ${f.error} · reset ${f.reset} · slow ${f.slow} · hang ${f.hang}`,
      );
    }
  } else if (s.handler) {
    for (const [name, values] of Object.entries(s.handler.byEndpoint)) {
      lines.push(
        `  ${name.padEnd(12)} delivered ${values.DeliverySucceeded ?? 0} · failed ${values.DeliveryFailed ?? 0} · retries ${values.DeliveryRetries ?? 0}`,
      );
    }
  }
  return lines;
}

/** One plain log line, for logs and pipes. */
export function formatLine(s: StatusSnapshot): string {
  const m = s.mapping;
  const parts = [
    `[status ${clock(s.uptimeMs)}]`,
    `queue=${s.queue.depth.visible}+${s.queue.depth.inFlight}in-flight`,
    `dlq=${total(s.dlq.depth)}`,
    `received=${m.received}`,
    `acknowledged=${m.acknowledged}`,
    `failed=${m.failed}`,
    `redelivered=${m.redelivered}`,
  ];
  if (s.handler) parts.push(`quarantined=${metric(s.handler, 'RecordsQuarantined')}`);
  for (const lane of s.lanes ?? []) parts.push(`lane.${lane.endpoint}=${laneBacklog(lane)}`);
  for (const { name, stats } of s.endpoints ?? []) parts.push(`${name}=${stats.unique}(+${stats.duplicates}dup)`);
  return parts.join(' ');
}

export interface StatusDisplayOptions {
  /** Where to draw; the real stdout by default. */
  write?: (text: string) => void;
  /** Redraw a panel in place (a terminal), or print plain lines. Default: process.stdout.isTTY. */
  tty?: boolean;
  /** How often to refresh. Default 500 ms on a terminal, 5 s otherwise. */
  intervalMs?: number;
}

/** A live status panel on a terminal, or a plain status line every few seconds (only when something changed). */
export class StatusDisplay {
  readonly #write: (text: string) => void;
  readonly #tty: boolean;
  readonly #intervalMs: number;
  #drawn = 0;
  #lastLine = '';
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(options: StatusDisplayOptions = {}) {
    this.#write = options.write ?? ((text) => process.stdout.write(text));
    this.#tty = options.tty ?? process.stdout.isTTY === true;
    this.#intervalMs = options.intervalMs ?? (this.#tty ? 500 : 5000);
  }

  start(sample: () => Promise<StatusSnapshot>): void {
    this.#timer = setInterval(() => {
      if (this.#busy) return;
      this.#busy = true;
      sample()
        .then((snapshot) => this.show(snapshot))
        .catch(() => {})
        .finally(() => {
          this.#busy = false;
        });
    }, this.#intervalMs);
  }

  show(snapshot: StatusSnapshot): void {
    if (this.#tty) {
      const lines = formatPanel(snapshot);
      // Back to the top of the previous panel, then overwrite it line by line.
      const up = this.#drawn > 0 ? `\x1b[${this.#drawn}A` : '';
      this.#write(`${up}${lines.map((line) => `\x1b[2K${line}\n`).join('')}`);
      this.#drawn = lines.length;
      return;
    }
    const line = formatLine(snapshot);
    // The clock is left out of the comparison: an idle stack prints nothing.
    const key = line.slice(line.indexOf(']'));
    if (key !== this.#lastLine) {
      this.#lastLine = key;
      this.#write(`${line}\n`);
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
