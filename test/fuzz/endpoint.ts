import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One generated answer of a fuzz endpoint to one request. */
export type Reply =
  | { kind: 'status'; status: number; retryAfter?: { seconds: number } | { dateAheadS: number } }
  | { kind: 'reset-before' }
  | { kind: 'cut-body'; status: number }
  | { kind: 'slow'; status: number; delayMs: number }
  | { kind: 'hang' };

/** How an endpoint behaves during one invocation: its generated script, down for everything, or healthy again. */
export type Mode = 'script' | 'down' | 'healthy';

/** The statuses with which an endpoint blames the event itself (issue 9, defect 4). */
export const POISON_STATUSES: ReadonlySet<number> = new Set([400, 413, 415, 422]);

/** Told of every request an endpoint reads, with its body, before it answers. */
export type OnRequest = (endpoint: FuzzEndpoint, key: string, headers: http.IncomingHttpHeaders, body: Buffer) => void;

/** A logical clock shared by every endpoint of a scenario, so acceptances can be ordered across endpoints. */
export interface Clock {
  tick: number;
}

/**
 * A loopback endpoint whose answer to each request comes from the scenario: the reply is picked from the script by
 * the event's key and the per-key attempt number, so a replay with the same seed answers the same way.
 */
export class FuzzEndpoint {
  /** Key → logical time of the first complete 2xx this endpoint sent for it, in any invocation. */
  readonly acceptedAt = new Map<string, number>();
  /** Keys answered with a complete 2xx during the current invocation → logical time of the first such answer. */
  acceptedNow = new Map<string, number>();
  /** Keys answered with a poison status (400/413/415/422) during the current invocation. */
  blamedNow = new Set<string>();
  requestsNow = 0;
  /** When each request was read (performance.now()), over the whole scenario. */
  readonly arrivals: number[] = [];
  /** Idempotency keys of the requests read during the current invocation. */
  readNow = new Set<string>();
  mode: Mode = 'script';
  readonly #attempts = new Map<string, number>();
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #server: http.Server;

  private constructor(
    readonly name: string,
    private readonly script: readonly Reply[],
    private readonly clock: Clock,
    private readonly onRequest: OnRequest,
  ) {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.#answer(req, res, Buffer.concat(chunks)));
      req.on('error', () => {});
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(
    name: string,
    script: readonly Reply[],
    clock: Clock,
    onRequest: OnRequest,
  ): Promise<FuzzEndpoint> {
    const endpoint = new FuzzEndpoint(name, script, clock, onRequest);
    await new Promise<void>((resolve) => endpoint.#server.listen(0, '127.0.0.1', resolve));
    return endpoint;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/events`;
  }

  beginInvocation(mode: Mode): void {
    this.mode = mode;
    this.acceptedNow = new Map();
    this.blamedNow = new Set();
    this.requestsNow = 0;
    this.readNow = new Set();
  }

  #pick(key: string): Reply {
    const attempt = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, attempt);
    if (this.mode === 'healthy') return { kind: 'status', status: 200 };
    if (this.mode === 'down') return attempt % 2 === 0 ? { kind: 'reset-before' } : { kind: 'status', status: 503 };
    let spread = 0;
    for (let i = 0; i < key.length; i += 8) spread += key.charCodeAt(i);
    return this.script[(spread + attempt - 1) % this.script.length]!;
  }

  #answer(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const header = req.headers['idempotency-key'];
    const key = typeof header === 'string' ? header : '';
    this.requestsNow++;
    this.arrivals.push(performance.now());
    this.readNow.add(key);
    this.onRequest(this, key, req.headers, body);
    const reply = this.#pick(key);
    switch (reply.kind) {
      case 'reset-before':
        req.socket.resetAndDestroy();
        return;
      case 'hang':
        return;
      case 'cut-body':
        res.writeHead(reply.status, { 'content-length': '64' });
        res.write('partial');
        // The status line and part of the body are out; the rest never comes.
        this.#later(() => req.socket.destroy(), 5);
        return;
      case 'slow':
        this.#later(() => this.#send(res, key, reply.status), reply.delayMs);
        return;
      case 'status': {
        const headers: Record<string, string> = {};
        if (reply.retryAfter && 'seconds' in reply.retryAfter)
          headers['retry-after'] = String(reply.retryAfter.seconds);
        else if (reply.retryAfter) {
          headers['retry-after'] = new Date(Date.now() + reply.retryAfter.dateAheadS * 1000).toUTCString();
        }
        this.#send(res, key, reply.status, headers);
        return;
      }
    }
  }

  #send(res: http.ServerResponse, key: string, status: number, headers: Record<string, string> = {}): void {
    if (res.destroyed) return;
    if (POISON_STATUSES.has(status)) this.blamedNow.add(key);
    res.writeHead(status, headers);
    res.end('{"ok":true}', () => {
      if (status < 200 || status >= 300 || res.destroyed) return;
      const tick = ++this.clock.tick;
      if (!this.acceptedNow.has(key)) this.acceptedNow.set(key, tick);
      if (!this.acceptedAt.has(key)) this.acceptedAt.set(key, tick);
    });
  }

  #later(fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
