import Queue from 'yocto-queue';
import { TokenBucket } from '../subscription/rate-limit';
import { CircuitBreaker } from './breaker';
import type { AttemptResult, Endpoint, PreparedRequest } from './endpoint';
import { toFailure } from './failure';
import { wakeWhenHeld } from './queue';
import { settleUnauthorized } from './refresh';
import { retryLater, retryWait } from './retry';
import type { DeliveryCallback, DeliveryResult, Job, RequestSource, Requeue, RetryOptions } from './types';

// Still imported from here by lib/lanes/serve.ts (changed elsewhere today) and by tests; the door is ./index.ts.
export type { DeliveryCallback, DeliveryResult, RequestSource, RetryOptions } from './types';

/**
 * Delivers events to one endpoint: at most `maxConnections` requests at once (the rest wait their turn in a queue,
 * their timeout not yet running), a circuit breaker over transient failures (breaker.ts), and retries with full
 * jitter that never wait past the deadline (retry.ts). A request waiting for its retry holds no connection.
 */
export class EndpointDelivery {
  readonly #endpoint: Endpoint;
  readonly #options: RetryOptions;
  readonly #random: () => number;
  readonly #breaker: CircuitBreaker;
  readonly #bucket: TokenBucket | undefined;
  // A linked list: O(1) dequeue, and a started job is let go at once (a warm instance holds only what still waits).
  readonly #queue = new Queue<Job>();
  #active = 0;
  /** Cancels the wake-up of a queue held by the breaker (a timer and an abort listener), if any. */
  #held: (() => void) | undefined;
  readonly #requeue: Requeue = (job) => {
    this.#queue.enqueue(job);
    this.#pump();
  };

  constructor(endpoint: Endpoint, options: RetryOptions, random = Math.random) {
    this.#endpoint = endpoint;
    this.#options = options;
    this.#random = random;
    this.#breaker = new CircuitBreaker(options.breakerThreshold, options.breakerHalfOpenMs);
    if (options.rateLimitPerSecond !== undefined) this.#bucket = new TokenBucket(options.rateLimitPerSecond);
  }

  get name(): string {
    return this.#endpoint.name;
  }

  /** Never rejects. `deadlineAt` (epoch ms) bounds the retries: no retry waits past it; the signal cuts a late attempt. */
  deliver(request: RequestSource, signal: AbortSignal, deadlineAt: number): Promise<DeliveryResult> {
    return new Promise((resolve) => this.submit(request, signal, deadlineAt, resolve));
  }

  /** deliver() with a callback: the batch path, one promise per event instead of one per delivery. */
  submit(request: RequestSource, signal: AbortSignal, deadlineAt: number, resolve: DeliveryCallback): void {
    const trialsSeen = this.#breaker.failedTrials;
    this.#requeue({ request, signal, deadlineAt, refreshed: false, attempt: 1, trialsSeen, resolve });
  }

  /** Starts queued jobs while connections are free; the breaker may hold them (a trial in flight, a half-open time). */
  #pump(): void {
    this.#held?.();
    this.#held = undefined;
    while (this.#active < this.#options.maxConnections) {
      const next = this.#queue.peek();
      if (next === undefined) return;
      const hold = next.signal.aborted ? undefined : this.#breaker.holdUntil(next.deadlineAt, next.trialsSeen);
      if (hold !== undefined) {
        this.#held = wakeWhenHeld(next.signal, hold, () => this.#pump());
        return;
      }
      this.#queue.dequeue();
      this.#start(next);
    }
  }

  #start(job: Job): void {
    if (job.signal.aborted) {
      job.resolve({ ok: false, endpoint: this.#endpoint.name, kind: 'aborted', attempts: job.attempt });
      return;
    }
    // A rate token is for a request that goes out: one the open breaker refuses must not spend it.
    if (this.#bucket && this.#breaker.refuses()) {
      job.resolve(this.#circuitOpen(job));
      return;
    }
    // The connection slot is held while waiting for a rate token: the wait is bounded by the rate, not by a timeout.
    this.#active++;
    const granted = this.#bucket ? this.#bucket.take(job.signal) : true;
    if (granted === true) this.#send(job, false);
    else
      granted.then((ok) => {
        if (ok) return this.#send(job, true);
        this.#active--;
        const cut = { kind: 'aborted', error: 'RATE_LIMIT_WAIT', attempts: job.attempt } as const;
        job.resolve({ ok: false, endpoint: this.#endpoint.name, ...cut });
        this.#pump();
      });
  }

  /** `waited`: called after a rate-limit wait, outside #pump's loop, which then has to be restarted. */
  #send(job: Job, waited: boolean): void {
    if (!this.#breaker.allow()) {
      this.#active--;
      // The breaker opened while this job waited for its token: the next waiter may use it.
      this.#bucket?.giveBack();
      job.resolve(this.#circuitOpen(job));
      if (waited) this.#pump();
      return;
    }
    let prepared: PreparedRequest | Promise<PreparedRequest>;
    try {
      prepared = job.request.prepare();
    } catch (error) {
      // Settled like any failure, so the trial it may be ends; a turn later, so a queue of them cannot nest #pump.
      queueMicrotask(() => this.#settle(job, error, undefined));
      return;
    }
    if (prepared instanceof Promise) {
      prepared.then(
        (request) => this.#post(job, request),
        (error: unknown) => this.#settle(job, error, undefined),
      );
    } else this.#post(job, prepared);
  }

  #circuitOpen(job: Job): DeliveryResult {
    const { name } = this.#endpoint;
    return { ok: false, endpoint: name, kind: 'circuit-open', error: 'CIRCUIT_OPEN', attempts: job.attempt };
  }

  #post(job: Job, request: PreparedRequest): void {
    this.#endpoint.send(request, job.signal, (error, result) => this.#settle(job, error, result));
  }

  #settle(job: Job, error: unknown, result: AttemptResult | undefined): void {
    this.#active--;
    if (error === undefined) {
      this.#breaker.succeeded();
      job.resolve({
        ok: true,
        endpoint: this.#endpoint.name,
        attempts: job.attempt,
        latencyMs: result!.latencyMs,
        status: result!.status,
      });
    } else {
      this.#breaker.failedWith(error);
      if (!settleUnauthorized(job, error, this.#endpoint.name, this.#requeue)) this.#retryOrFail(job, error);
    }
    this.#pump();
  }

  #retryOrFail(job: Job, error: unknown): void {
    const failure = toFailure(this.#endpoint.name, error, job.attempt);
    const wait = retryWait(job, failure.kind, error, this.#options, this.#random);
    if (wait === undefined) job.resolve({ ok: false, ...failure });
    else retryLater(job, failure, wait, this.#requeue);
  }

  close(): void {
    this.#held?.();
    this.#endpoint.close();
  }
}
