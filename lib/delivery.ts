import { setTimeout as sleep } from 'node:timers/promises';
import {
  BrokenCircuitError,
  type BulkheadPolicy,
  bulkhead,
  type CircuitBreakerPolicy,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  IsolatedCircuitError,
  TaskCancelledError,
} from 'cockatiel';
import type { Credential, Endpoint } from './endpoint';
import { DeliveryAttemptError } from './errors';
import type { DeliveryFailure } from './types';

export interface RetryOptions {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  breakerThreshold: number;
  breakerHalfOpenMs: number;
  maxConnections: number;
}

export type DeliveryResult =
  | { ok: true; endpoint: string; attempts: number; latencyMs: number; status: number }
  | ({ ok: false } & DeliveryFailure);

/** Full jitter: a uniform delay in [0, min(max, base × 2^(attempt−1))). */
export function retryDelayMs(attempt: number, options: Pick<RetryOptions, 'baseMs' | 'maxMs'>, random = Math.random) {
  return Math.floor(random() * Math.min(options.maxMs, options.baseMs * 2 ** (attempt - 1)));
}

function toFailure(endpoint: string, error: unknown, attempts: number): DeliveryResult {
  if (error instanceof DeliveryAttemptError) {
    const failure: DeliveryResult = { ok: false, endpoint, kind: error.kind, attempts };
    if (error.status !== undefined) failure.status = error.status;
    if (error.code !== undefined) failure.error = error.code;
    if (error.retryAfterMs !== undefined) failure.retryAfterS = Math.ceil(error.retryAfterMs / 1000);
    return failure;
  }
  if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) {
    return { ok: false, endpoint, kind: 'circuit-open', error: 'CIRCUIT_OPEN', attempts };
  }
  if (error instanceof TaskCancelledError) return { ok: false, endpoint, kind: 'aborted', attempts };
  return { ok: false, endpoint, kind: 'transient', error: (error as Error)?.message ?? String(error), attempts };
}

/**
 * Delivers events to one endpoint: at most `maxConnections` requests at once (the rest wait their turn without a
 * running timeout), a circuit breaker over transient failures, and retries with full jitter inside the deadline.
 */
export class EndpointDelivery {
  readonly #endpoint: Endpoint;
  readonly #options: RetryOptions;
  readonly #bulkhead: BulkheadPolicy;
  readonly #breaker: CircuitBreakerPolicy | undefined;
  readonly #random: () => number;

  constructor(endpoint: Endpoint, options: RetryOptions, random = Math.random) {
    this.#endpoint = endpoint;
    this.#options = options;
    this.#random = random;
    this.#bulkhead = bulkhead(options.maxConnections, Number.MAX_SAFE_INTEGER);
    this.#breaker =
      options.breakerThreshold > 0
        ? circuitBreaker(
            handleWhen((error) => error instanceof DeliveryAttemptError && error.kind === 'transient'),
            { halfOpenAfter: options.breakerHalfOpenMs, breaker: new ConsecutiveBreaker(options.breakerThreshold) },
          )
        : undefined;
  }

  get name(): string {
    return this.#endpoint.name;
  }

  #attempt(body: Buffer, key: string, signal: AbortSignal, credential?: Credential) {
    const post = () => this.#endpoint.post(body, key, signal, credential);
    const guarded = this.#breaker ? () => (this.#breaker as CircuitBreakerPolicy).execute(post) : post;
    return this.#bulkhead.execute(guarded, signal);
  }

  /** Never throws. `deadlineAt` (epoch ms) bounds the retries: no retry waits past it; the signal cuts a late attempt. */
  async deliver(
    body: Buffer,
    key: string,
    signal: AbortSignal,
    deadlineAt: number,
    credential?: Credential,
  ): Promise<DeliveryResult> {
    const name = this.#endpoint.name;
    // Our own loop rather than cockatiel's retry: its backoff wait ignores the abort signal and would outlive the deadline.
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.#attempt(body, key, signal, credential);
        return { ok: true, endpoint: name, attempts: attempt, latencyMs: result.latencyMs, status: result.status };
      } catch (error) {
        const failure = toFailure(name, error, attempt);
        if (failure.ok || failure.kind !== 'transient' || attempt >= this.#options.maxAttempts) return failure;
        const wait = Math.max(retryDelayMs(attempt, this.#options, this.#random), (failure.retryAfterS ?? 0) * 1000);
        if (Date.now() + wait >= deadlineAt) return failure;
        try {
          await sleep(wait, undefined, { signal });
        } catch {
          return failure;
        }
      }
    }
  }

  close(): void {
    this.#endpoint.close();
  }
}
