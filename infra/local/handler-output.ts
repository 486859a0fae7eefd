import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';

/** Sums of the handler's EMF metrics, overall and per endpoint dimension. */
export interface HandlerTelemetry {
  metrics: Record<string, number>;
  byEndpoint: Record<string, Record<string, number>>;
  /** Powertools log lines by level (INFO, WARN, ERROR...). */
  logs: Record<string, number>;
}

type Write = typeof process.stdout.write;

function sum(value: unknown): number {
  if (typeof value === 'number') return value;
  if (Array.isArray(value)) return value.reduce((total: number, v) => total + (typeof v === 'number' ? v : 0), 0);
  return 0;
}

interface EmfDocument {
  _aws: { CloudWatchMetrics?: { Metrics?: { Name?: string }[] }[] };
  endpoint?: unknown;
  [key: string]: unknown;
}

function isEmf(value: object): value is EmfDocument {
  return '_aws' in value && typeof value._aws === 'object' && value._aws !== null;
}

export interface HandlerOutputOptions {
  /** Where the handler's JSON lines go: 'terminal' (as they are), 'discard' (only tallied), or a file path. */
  destination: 'terminal' | 'discard' | string;
}

type Stream = typeof process.stdout | typeof process.stderr;

/**
 * Watches everything written to stdout and stderr (Powertools logs WARN and ERROR on stderr): the handler's JSON
 * lines (logs and EMF metrics) are tallied and, when a file is the destination, sent there instead of the terminal;
 * every other line passes through.
 */
export class HandlerOutput {
  readonly telemetry: HandlerTelemetry = { metrics: {}, byEndpoint: {}, logs: {} };
  readonly #originals = new Map<Stream, Write>();
  readonly #pending = new Map<Stream, string>();
  readonly #file: WriteStream | undefined;
  readonly #discard: boolean;

  constructor(options: HandlerOutputOptions) {
    this.#discard = options.destination === 'discard';
    if (options.destination !== 'terminal' && options.destination !== 'discard') {
      mkdirSync(dirname(options.destination), { recursive: true });
      // Afresh on every run: lines of runs appended one after another could not be told apart.
      this.#file = createWriteStream(options.destination, { flags: 'w' });
    }
  }

  /** Writes to the real stdout, bypassing the capture (the status panel uses this). */
  write(text: string): void {
    (this.#originals.get(process.stdout) ?? process.stdout.write.bind(process.stdout))(text);
  }

  install(): void {
    for (const stream of [process.stdout, process.stderr]) {
      if (this.#originals.has(stream)) continue;
      const original = stream.write.bind(stream) as Write;
      this.#originals.set(stream, original);
      this.#pending.set(stream, '');
      const capture = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
        let pending =
          this.#pending.get(stream)! + (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
        let newline = pending.indexOf('\n');
        while (newline >= 0) {
          this.#line(pending.slice(0, newline + 1), original);
          pending = pending.slice(newline + 1);
          newline = pending.indexOf('\n');
        }
        this.#pending.set(stream, pending);
        const callback = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
        callback?.();
        return true;
      };
      stream.write = capture as Write;
    }
  }

  async uninstall(): Promise<void> {
    for (const [stream, original] of this.#originals) {
      stream.write = original;
      const pending = this.#pending.get(stream);
      if (pending) this.#line(pending, original);
    }
    this.#originals.clear();
    this.#pending.clear();
    const file = this.#file;
    if (file && !file.closed) await new Promise<void>((resolve) => file.end(() => resolve()));
  }

  #line(line: string, original: Write): void {
    let parsed: unknown;
    if (line.startsWith('{')) {
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = undefined;
      }
    }
    if (typeof parsed !== 'object' || parsed === null) {
      original(line);
      return;
    }
    this.#tally(parsed);
    if (this.#file) this.#file.write(line);
    else if (!this.#discard) original(line);
  }

  #tally(document: object): void {
    if (isEmf(document)) {
      const endpoint = typeof document.endpoint === 'string' ? document.endpoint : undefined;
      if (endpoint && !this.telemetry.byEndpoint[endpoint]) this.telemetry.byEndpoint[endpoint] = {};
      const target = endpoint ? this.telemetry.byEndpoint[endpoint]! : this.telemetry.metrics;
      for (const directive of document._aws.CloudWatchMetrics ?? []) {
        for (const { Name } of directive.Metrics ?? []) {
          if (Name) target[Name] = (target[Name] ?? 0) + sum(document[Name]);
        }
      }
      return;
    }
    if ('level' in document && typeof document.level === 'string') {
      this.telemetry.logs[document.level] = (this.telemetry.logs[document.level] ?? 0) + 1;
    }
  }
}
