import { createHmac } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Pool as UndiciPool } from 'undici';
import buildConnector from 'undici/lib/core/connect.js';
// The Pool module alone, not undici's index (fetch, WebSocket, caches…): 284 against 535 kB, and about half the module
// load time at cold start (bench table 4).
import Pool from 'undici/lib/dispatcher/pool.js';
import { whenAborted } from '../abort';
import { DeliveryAttemptError } from '../errors';

/** How an endpoint authenticates our requests; resolved from ENDPOINT_CREDENTIALS. */
export type Credential = { kind: 'bearer'; token: string } | { kind: 'hmac'; secret: string };

export const CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';
export const USER_AGENT = 'ingest-fanout/0.1';
// Response bodies are read and thrown away; past this many bytes the connection is dropped instead.
const DRAIN_CAP_BYTES = 64 * 1024;

export interface EndpointOptions {
  name: string;
  url: URL;
  timeoutMs: number;
  maxConnections: number;
}

/** What one POST sends: headers and body are shaped per (event, endpoint) by lib/subscription/request.ts. */
export interface PreparedRequest {
  headers: Readonly<Record<string, string>>;
  body: Buffer;
  /** The headers carry the event's attributes (binary mode's ce- headers): a 431 then blames the event. */
  eventHeaders?: boolean;
}

export interface AttemptResult {
  status: number;
  latencyMs: number;
}

/** Called once per attempt: a DeliveryAttemptError, or the result of a 2xx. */
export type AttemptCallback = (error: DeliveryAttemptError | undefined, result: AttemptResult | undefined) => void;

/** Observes one request, e.g. as an X-Ray subsegment. */
export type RequestObserver = (
  endpoint: string,
) => ((outcome: { status?: number; error?: string }) => void) | undefined;

/** Parses Retry-After (delta-seconds or HTTP-date) into milliseconds from now. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function authHeaders(credential: Credential | undefined, body: Buffer): Record<string, string> {
  if (!credential) return {};
  if (credential.kind === 'bearer') return { authorization: `Bearer ${credential.token}` };
  return { 'x-signature-256': `sha256=${createHmac('sha256', credential.secret).update(body).digest('hex')}` };
}

/**
 * 4xx statuses by whom they blame; the one place that decides it (documented in the README's failure table).
 * POISON: the endpoint blames the event, which is quarantined. CREDENTIALS: the endpoint refuses our credentials,
 * which are refreshed once and retried, then backed off. Any other 4xx (404, 405, 409, 410...) describes the
 * endpoint, not the event: backed off, never quarantined. 408 and 429 are transient, like 5xx. EVENT_HEADERS: poison
 * only when the headers carry the event (binary mode); otherwise they are ours (static headers, a token): endpoint-error.
 */
export const HTTP_4XX = {
  poison: [400, 413, 415, 422],
  eventHeaders: [431],
  credentials: [401, 403],
  transient: [408, 429],
} as const satisfies Record<string, readonly number[]>;

const isIn = (list: readonly number[], status: number) => list.includes(status);

/** Turns a final HTTP status into success or a typed attempt error. */
export function classifyStatus(
  endpoint: string,
  status: number,
  retryAfter: string | undefined,
  eventHeaders = false,
): DeliveryAttemptError | undefined {
  if (status >= 200 && status < 300) return undefined;
  if (status >= 300 && status < 400) {
    return new DeliveryAttemptError('redirect', endpoint, `answered ${status}; redirects are not followed`, status);
  }
  if (isIn(HTTP_4XX.transient, status) || status >= 500) {
    return new DeliveryAttemptError(
      'transient',
      endpoint,
      `answered ${status}`,
      status,
      undefined,
      parseRetryAfter(retryAfter),
    );
  }
  if (isIn(HTTP_4XX.poison, status) || (eventHeaders && isIn(HTTP_4XX.eventHeaders, status)))
    return new DeliveryAttemptError('rejected', endpoint, `answered ${status}`, status);
  if (isIn(HTTP_4XX.credentials, status)) {
    return new DeliveryAttemptError(
      'unauthorized',
      endpoint,
      `answered ${status}: credentials refused`,
      status,
      'CREDENTIALS_REFUSED',
    );
  }
  return new DeliveryAttemptError('endpoint-error', endpoint, `answered ${status}`, status);
}

/** The Retry-After value among undici's raw response headers (name, value, name, value…). */
function retryAfterOf(rawHeaders: Buffer[] | undefined): string | undefined {
  if (!rawHeaders) return undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 11 && rawHeaders[i]!.toString('latin1').toLowerCase() === 'retry-after') {
      return rawHeaders[i + 1]!.toString('latin1');
    }
  }
  return undefined;
}

const DRAIN_CAP = new Error('response body over the drain cap');

/**
 * undici's connector with a connect + TLS timeout of our own, as exact as the attempt's: undici's runs on its coarse
 * clock (up to 1 s late) and is 10 s whatever DELIVERY_TIMEOUT_MS says. A handshake that outlives it is torn down.
 * `opened` hears of each socket as it starts connecting (synchronously, within the dispatch that asked for it).
 */
function exactConnector(timeoutMs: number, opened: (socket: Socket) => void): buildConnector.connector {
  // timeout 0: undici's own connect timer off.
  const connect = buildConnector({ timeout: 0 });
  return (options, callback) => {
    let timer: NodeJS.Timeout | undefined;
    const socket = connect(options, (...result) => {
      clearTimeout(timer);
      if (result[1]) established.add(result[1]);
      callback(...result);
    });
    timer = setTimeout(() => {
      const error = Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: 'CONNECT_TIMEOUT' });
      socket.destroy(error);
    }, timeoutMs);
    opened(socket);
  };
}

// Sockets whose connect (and TLS handshake) ended, either way: an attempt that settles leaves them to undici.
const established = new WeakSet<Socket>();
const CONNECT_DROPPED = Object.assign(new Error('the attempt that opened this connection settled first'), {
  code: 'CONNECT_DROPPED',
});

/**
 * One attempt, as an undici dispatch handler. undici's older callback interface (onConnect/onHeaders/…) skips the
 * per-response header parsing and controller object of the newer one: the status decides, headers matter only on failure.
 */
class Attempt {
  #abort: ((error?: Error) => void) | undefined;
  #status = 0;
  #drained = 0;
  #rawHeaders: Buffer[] | undefined;
  #settled = false;
  readonly #timer: NodeJS.Timeout;
  readonly #started = performance.now();
  /** Where the endpoint keeps this attempt while it is in flight. */
  slot = -1;
  /** The connection this attempt's dispatch opened: its only request is this one until it is established. */
  connecting: Socket | undefined;

  constructor(
    readonly endpoint: Endpoint,
    readonly signal: AbortSignal,
    readonly done: AttemptCallback,
    readonly trace: ((outcome: { status?: number; error?: string }) => void) | undefined,
    readonly eventHeaders: boolean,
  ) {
    // One exact deadline per attempt, whatever it is doing (connecting, TLS, sending, waiting, reading).
    this.#timer = setTimeout(() => this.#timedOut(), endpoint.timeoutMs);
  }

  #timedOut(): void {
    const { name, timeoutMs } = this.endpoint;
    this.#fail(new DeliveryAttemptError('transient', name, `no answer within ${timeoutMs} ms`, undefined, 'TIMEOUT'));
    this.#abort?.();
  }

  /** The invocation deadline passed: settle now and drop the request. */
  aborted(): void {
    this.#fail(new DeliveryAttemptError('aborted', this.endpoint.name, 'the invocation deadline was reached'));
    this.#abort?.();
  }

  onConnect(abort: (error?: Error) => void): void {
    this.#abort = abort;
    this.connecting = undefined;
    if (this.#settled) abort();
  }

  onHeaders(status: number, rawHeaders: Buffer[]): boolean {
    // 1xx informational answers come before the final one.
    if (status < 200) return true;
    this.#status = status;
    if (status >= 300) this.#rawHeaders = rawHeaders;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#drained += chunk.length;
    if (this.#drained > DRAIN_CAP_BYTES) this.#abort?.(DRAIN_CAP);
    return true;
  }

  onComplete(): void {
    this.#finish();
  }

  onError(error: Error & { code?: string }): void {
    // A body we stopped reading on purpose: the status line decides.
    if (error === DRAIN_CAP) {
      this.#finish();
      return;
    }
    const { name } = this.endpoint;
    const status = this.#status;
    // A 2xx whose body the network cut (not our own cap) may not have been taken: retry it, keyed.
    if (status >= 200 && status < 300) {
      this.#fail(
        new DeliveryAttemptError(
          'transient',
          name,
          `answered ${status} but the body was cut`,
          // No status: "failed with 200" would read as the endpoint refusing with 200 in the by-status query.
          undefined,
          `INCOMPLETE_${status}`,
        ),
      );
      return;
    }
    // A failure status decides the outcome even when its body is cut short.
    if (status >= 300) {
      this.#finish();
      return;
    }
    this.#fail(new DeliveryAttemptError('transient', name, error.message, undefined, error.code ?? 'REQUEST_ERROR'));
  }

  #finish(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#forget();
    const status = this.#status;
    this.trace?.({ status });
    const error = classifyStatus(this.endpoint.name, status, retryAfterOf(this.#rawHeaders), this.eventHeaders);
    if (error) this.done(error, undefined);
    else this.done(undefined, { status, latencyMs: performance.now() - this.#started });
  }

  #forget(): void {
    clearTimeout(this.#timer);
    this.endpoint.forget(this);
    // Settled while its connection was still being opened (deadline or abort): nothing else waits on that socket, and
    // kept until its own connect timer it would hold a pool slot from the next attempt.
    const socket = this.connecting;
    this.connecting = undefined;
    if (socket && !established.has(socket)) socket.destroy(CONNECT_DROPPED);
  }

  #fail(error: DeliveryAttemptError): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#forget();
    this.trace?.({ error: error.code ?? error.message });
    this.done(error, undefined);
  }
}

/**
 * One downstream endpoint: a keep-alive undici Pool and single POST attempts bounded by a timeout.
 * undici's dispatch rather than node:http or Pool.request(): 359 against 619 and 441 µs of process CPU per event for the
 * same POSTs (bench table 6, same run).
 */
export class Endpoint {
  readonly name: string;
  readonly timeoutMs: number;
  readonly #pool: UndiciPool;
  readonly #path: string;
  readonly #observe: RequestObserver | undefined;
  // Attempts in flight, and the signals already watched: one 'abort' listener per signal, no closure per request.
  // Slots, not a Set: a Set hashes every new attempt object, which showed in the CPU profile (2 µs per event).
  readonly #attempts: (Attempt | undefined)[] = [];
  readonly #freeSlots: number[] = [];
  readonly #watched = new WeakSet<AbortSignal>();
  /** The attempt being handed to the pool: a connection opened meanwhile is opened for it. */
  #dispatching: Attempt | undefined;

  constructor(options: EndpointOptions, observe?: RequestObserver) {
    this.name = options.name;
    this.timeoutMs = options.timeoutMs;
    this.#observe = observe;
    const { url } = options;
    this.#path = `${url.pathname}${url.search}`;
    const connect = exactConnector(options.timeoutMs, (socket) => {
      if (this.#dispatching) this.#dispatching.connecting = socket;
    });
    this.#pool = new Pool(url.origin, { connections: options.maxConnections, pipelining: 1, connect });
  }

  /**
   * Sends one request once; `done` is called exactly once, also when the signal aborts it. The headers go as given
   * (plus user-agent when absent; undici adds content-length), the body bytes unchanged: signatures cover them.
   */
  send(request: PreparedRequest, signal: AbortSignal, done: AttemptCallback): void {
    if (signal.aborted) {
      done(new DeliveryAttemptError('aborted', this.name, 'the invocation deadline was reached'), undefined);
      return;
    }
    const attempt = new Attempt(this, signal, done, this.#observe?.(this.name), request.eventHeaders === true);
    this.#watch(signal);
    attempt.slot = this.#freeSlots.pop() ?? this.#attempts.length;
    this.#attempts[attempt.slot] = attempt;
    this.#dispatching = attempt;
    try {
      this.#dispatch(request, attempt);
    } catch (error) {
      // A synchronous throw settles the attempt like any other failure, so a breaker trial it may be ends too.
      attempt.onError(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#dispatching = undefined;
    }
  }

  #dispatch(request: PreparedRequest, attempt: Attempt): void {
    const { headers } = request;
    this.#pool.dispatch(
      {
        path: this.#path,
        method: 'POST',
        // lib/subscription/request.ts puts the user-agent in the headers it builds once per event: no copy here.
        headers: headers['user-agent'] === undefined ? { 'user-agent': USER_AGENT, ...headers } : headers,
        body: request.body,
        // Off (0): the attempt's own timer bounds the whole request; undici's fire late on its coarse clock.
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      attempt,
    );
  }

  #watch(signal: AbortSignal): void {
    if (this.#watched.has(signal)) return;
    this.#watched.add(signal);
    // Through whenAborted: one listener per signal whatever the number of endpoints (Node warns past 10).
    whenAborted(signal, () => {
      for (const attempt of this.#attempts) if (attempt?.signal === signal) attempt.aborted();
    });
  }

  /** An attempt settled: nothing aborts it any more. */
  forget(attempt: Attempt): void {
    if (this.#attempts[attempt.slot] !== attempt) return;
    this.#attempts[attempt.slot] = undefined;
    this.#freeSlots.push(attempt.slot);
  }

  /** POSTs the request once. Resolves on 2xx; rejects with a DeliveryAttemptError otherwise. */
  post(request: PreparedRequest, signal: AbortSignal): Promise<AttemptResult> {
    return new Promise((resolve, reject) => {
      this.send(request, signal, (error, result) => (error ? reject(error) : resolve(result!)));
    });
  }

  close(): void {
    void this.#pool.destroy();
  }
}
