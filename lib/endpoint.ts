import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { DeliveryAttemptError } from './errors';

/** How an endpoint authenticates our requests; resolved from ENDPOINT_CREDENTIALS. */
export type Credential = { kind: 'bearer'; token: string } | { kind: 'hmac'; secret: string };

export const CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';
const USER_AGENT = 'ingest-fanout/0.1';
// Response bodies are read and thrown away; past this many bytes the connection is dropped instead.
const DRAIN_CAP_BYTES = 64 * 1024;

export interface EndpointOptions {
  name: string;
  url: URL;
  timeoutMs: number;
  maxConnections: number;
}

export interface AttemptResult {
  status: number;
  latencyMs: number;
}

// One 'abort' listener per signal fans out to the requests in flight: EventTarget add/remove per request is costly.
const inFlight = new WeakMap<AbortSignal, Set<() => void>>();

export function whenAborted(signal: AbortSignal, callback: () => void): () => void {
  let callbacks = inFlight.get(signal);
  if (!callbacks) {
    const set = new Set<() => void>();
    callbacks = set;
    inFlight.set(signal, set);
    signal.addEventListener('abort', () => {
      for (const fn of set) fn();
      set.clear();
    });
  }
  callbacks.add(callback);
  return () => callbacks.delete(callback);
}

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
 * endpoint, not the event: backed off, never quarantined. 408 and 429 are transient, like 5xx.
 */
export const HTTP_4XX = {
  poison: [400, 413, 415, 422],
  credentials: [401, 403],
  transient: [408, 429],
} as const satisfies Record<string, readonly number[]>;

const isIn = (list: readonly number[], status: number) => list.includes(status);

/** Turns a final HTTP status into success or a typed attempt error. */
export function classifyStatus(
  endpoint: string,
  status: number,
  retryAfter: string | undefined,
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
  if (isIn(HTTP_4XX.poison, status))
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

/** One downstream endpoint: a keep-alive connection pool and single POST attempts bounded by a timeout. */
export class Endpoint {
  readonly name: string;
  readonly #target: http.RequestOptions;
  readonly #timeoutMs: number;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  readonly #observe: RequestObserver | undefined;

  constructor(options: EndpointOptions, observe?: RequestObserver) {
    this.name = options.name;
    this.#timeoutMs = options.timeoutMs;
    this.#observe = observe;
    const secure = options.url.protocol === 'https:';
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.maxConnections,
      maxFreeSockets: options.maxConnections,
      // The most recently used socket is the least likely to have been closed by the server.
      scheduling: 'lifo' as const,
    };
    this.#agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#request = secure ? https.request : http.request;
    const { url } = options;
    // Resolved once: handing Node a URL would convert it again on every request.
    this.#target = {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      method: 'POST',
      agent: this.#agent,
    };
  }

  /** POSTs the body once. Resolves on 2xx; rejects with a DeliveryAttemptError otherwise. */
  post(body: Buffer, key: string, signal: AbortSignal, credential?: Credential): Promise<AttemptResult> {
    const name = this.name;
    if (signal.aborted) {
      return Promise.reject(new DeliveryAttemptError('aborted', name, 'the invocation deadline was reached'));
    }
    const finishTrace = this.#observe?.(name);
    return new Promise<AttemptResult>((resolve, reject) => {
      const started = performance.now();
      let settled = false;
      const req = this.#request({
        ...this.#target,
        headers: {
          'content-type': CONTENT_TYPE,
          'content-length': body.length,
          'idempotency-key': key,
          'user-agent': USER_AGENT,
          ...authHeaders(credential, body),
        },
      });
      const cleanup = () => {
        clearTimeout(timer);
        forgetAbort();
      };
      const fail = (error: DeliveryAttemptError) => {
        if (settled) return;
        settled = true;
        cleanup();
        req.destroy();
        finishTrace?.({ error: error.code ?? error.message });
        reject(error);
      };
      const onAbort = () => fail(new DeliveryAttemptError('aborted', name, 'the invocation deadline was reached'));
      const timer = setTimeout(
        () =>
          fail(
            new DeliveryAttemptError('transient', name, `no answer within ${this.#timeoutMs} ms`, undefined, 'TIMEOUT'),
          ),
        this.#timeoutMs,
      );
      const forgetAbort = whenAborted(signal, onAbort);
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        let drained = 0;
        let capped = false;
        const finish = () => {
          if (settled) return;
          const ok = status >= 200 && status < 300;
          // A 2xx whose body the network cut (not our own cap) may not have been taken: retry it, keyed.
          if (ok && !res.complete && !capped) {
            fail(
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
          settled = true;
          cleanup();
          finishTrace?.({ status });
          // res.headers parses every header on first use: only a failure needs one (Retry-After).
          if (ok) {
            resolve({ status, latencyMs: performance.now() - started });
            return;
          }
          const header = res.headers['retry-after'];
          reject(classifyStatus(name, status, Array.isArray(header) ? header[0] : header));
        };
        res.on('data', (chunk: Buffer) => {
          drained += chunk.length;
          if (drained > DRAIN_CAP_BYTES) {
            capped = true;
            res.destroy();
          }
        });
        res.on('end', finish);
        // A failure status decides the outcome even when its body is cut short; a 2xx needs its whole body.
        res.on('close', finish);
        res.on('error', () => {});
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        fail(new DeliveryAttemptError('transient', name, error.message, undefined, error.code ?? 'REQUEST_ERROR'));
      });
      req.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}
