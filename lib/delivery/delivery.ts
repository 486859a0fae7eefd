import { DeliveryAttemptError } from '../errors';
import { TokenBucket } from '../subscription/rate-limit';
import type { DeliveryFailure } from '../types';
import { type AttemptResult, type Endpoint, type PreparedRequest, whenAborted } from './endpoint';

export interface RetryOptions {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  breakerThreshold: number;
  breakerHalfOpenMs: number;
  maxConnections: number;
  /** Requests per second this instance may send the endpoint (token bucket); unlimited when absent. */
  rateLimitPerSecond?: number;
}

/**
 * The request of one delivery, prepared per attempt (signatures carry a timestamp), by lib/subscription/request.ts.
 * `refresh`, when there are credentials to renew, renews them after a 401/403; the next `prepare` uses the new ones.
 * It resolves false when there is nothing new to retry with (read again too recently, or the same value).
 */
export interface RequestSource {
  prepare(): PreparedRequest | Promise<PreparedRequest>;
  refresh?: (status?: number) => Promise<boolean>;
}

export type DeliveryResult =
  | { ok: true; endpoint: string; attempts: number; latencyMs: number; status: number }
  | ({ ok: false } & DeliveryFailure);

/** Full jitter: a uniform delay in [0, min(max, base × 2^(attempt−1))). */
export function retryDelayMs(attempt: number, options: Pick<RetryOptions, 'baseMs' | 'maxMs'>, random = Math.random) {
  return Math.floor(random() * Math.min(options.maxMs, options.baseMs * 2 ** (attempt - 1)));
}

function toFailure(endpoint: string, error: unknown, attempts: number): DeliveryFailure {
  if (error instanceof DeliveryAttemptError) {
    const failure: DeliveryFailure = { endpoint, kind: error.kind, attempts };
    if (error.status !== undefined) failure.status = error.status;
    if (error.code !== undefined) failure.error = error.code;
    if (error.retryAfterMs !== undefined) failure.retryAfterS = Math.ceil(error.retryAfterMs / 1000);
    return failure;
  }
  return { endpoint, kind: 'transient', error: (error as Error)?.message ?? String(error), attempts };
}

/**
 * Consecutive transient failures open the circuit for `halfOpenMs`; then one trial request decides.
 * Our own rather than cockatiel's: its breaker only wraps calls in execute(), and that per-request promise chain was
 * the largest cost of the hot path in the benchmark profile (BENCHMARKS.md, CPU per event).
 */
export class CircuitBreaker {
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  #failedTrials = 0;

  constructor(
    private readonly threshold: number,
    private readonly halfOpenMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** May a request go out now? In the half-open state only one trial at a time may. */
  allow(): boolean {
    if (this.threshold <= 0 || this.#failures < this.threshold) return true;
    if (this.now() < this.#openUntil || this.#trialInFlight) return false;
    this.#trialInFlight = true;
    return true;
  }

  /** Would allow() refuse now? Asks without taking the half-open trial. */
  refuses(): boolean {
    return (
      this.threshold > 0 && this.#failures >= this.threshold && (this.now() < this.#openUntil || this.#trialInFlight)
    );
  }

  /** The endpoint answered (whatever the status): it is up. */
  succeeded(): void {
    this.#failures = 0;
    this.#trialInFlight = false;
  }

  failed(): void {
    if (this.#trialInFlight) this.#failedTrials++;
    this.#trialInFlight = false;
    this.#failures++;
    if (this.threshold > 0 && this.#failures >= this.threshold) this.#openUntil = this.now() + this.halfOpenMs;
  }

  /** The attempt ended without telling whether the endpoint is up (cut, or never sent): the next one may try. */
  abandoned(): void {
    this.#trialInFlight = false;
  }

  /** Trials that failed so far: a request that waited through one fails circuit-open rather than wait again. */
  get failedTrials(): number {
    return this.#failedTrials;
  }

  /**
   * Should a request due by `deadlineAt`, queued when `failedTrialsSeen` trials had failed, wait rather than fail?
   * 'trial' = until the trial in flight ends; a number = until the half-open time (epoch ms); undefined = no.
   */
  holdUntil(deadlineAt: number, failedTrialsSeen: number): 'trial' | number | undefined {
    if (this.threshold <= 0 || this.#failures < this.threshold || this.#failedTrials > failedTrialsSeen) return;
    if (this.#trialInFlight) return 'trial';
    if (this.now() < this.#openUntil && deadlineAt > this.#openUntil) return this.#openUntil;
    return;
  }
}

interface Job {
  request: RequestSource;
  signal: AbortSignal;
  deadlineAt: number;
  /** Set once the credentials were renewed after a 401/403: the next refusal is final. */
  refreshed: boolean;
  attempt: number;
  /** The breaker's failed trials when the job was queued: one failing after that fails the job. */
  trialsSeen: number;
  resolve: (result: DeliveryResult) => void;
}

/** Called once with the final result of one delivery. */
export type DeliveryCallback = (result: DeliveryResult) => void;

/**
 * Delivers events to one endpoint: at most `maxConnections` requests at once (the rest wait their turn in a queue,
 * their timeout not yet running), a circuit breaker over transient failures, and retries with full jitter that never
 * wait past the deadline. A request waiting for its retry holds no connection.
 */
export class EndpointDelivery {
  readonly #endpoint: Endpoint;
  readonly #options: RetryOptions;
  readonly #random: () => number;
  readonly #breaker: CircuitBreaker;
  readonly #bucket: TokenBucket | undefined;
  // A plain array with a moving head: shift() on a 10,000-item queue would copy it on every dequeue.
  #queue: Job[] = [];
  #head = 0;
  #active = 0;
  /** Cancels the wake-up of a queue held by the breaker (a timer and an abort listener), if any. */
  #held: (() => void) | undefined;

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
    this.#queue.push({ request, signal, deadlineAt, refreshed: false, attempt: 1, trialsSeen, resolve });
    this.#pump();
  }

  #pump(): void {
    this.#held?.();
    this.#held = undefined;
    while (this.#active < this.#options.maxConnections && this.#head < this.#queue.length) {
      const next = this.#queue[this.#head]!;
      const hold = next.signal.aborted ? undefined : this.#breaker.holdUntil(next.deadlineAt, next.trialsSeen);
      if (hold !== undefined) {
        this.#hold(next.signal, hold);
        return;
      }
      const job = this.#queue[this.#head++]!;
      if (this.#head === this.#queue.length) {
        this.#queue = [];
        this.#head = 0;
      } else if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      this.#start(job);
    }
  }

  /** While a trial is in flight or the half-open time comes before the deadline, jobs wait in the queue. */
  #hold(signal: AbortSignal, until: 'trial' | number): void {
    const wake = () => this.#pump();
    const timer = until === 'trial' ? undefined : setTimeout(wake, Math.max(0, until - Date.now()));
    const forget = whenAborted(signal, wake);
    this.#held = () => {
      clearTimeout(timer);
      forget();
    };
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
      const known = error instanceof DeliveryAttemptError;
      if (!known || error.kind === 'transient') this.#breaker.failed();
      // Cut by the deadline, or failed before sending (a malformed secret): nothing says whether the endpoint is up.
      else if (error.kind === 'aborted' || error.status === undefined) this.#breaker.abandoned();
      else this.#breaker.succeeded();
      const { refresh } = job.request;
      if (known && error.kind === 'unauthorized' && refresh && !job.refreshed) {
        this.#refreshAndRetry(job, refresh, error);
      } else if (known && error.kind === 'unauthorized' && !refresh) {
        // No credential configured for the endpoint, so none to read again: the log must not say it was.
        const failure = toFailure(this.#endpoint.name, error, job.attempt);
        // A failure found before sending (e.g. INVALID_HEADER_VALUE) keeps its own code.
        const code = error.status === undefined && failure.error ? failure.error : 'CREDENTIALS_NONE';
        job.resolve({ ok: false, ...failure, error: code });
      } else this.#retryOrFail(job, error);
    }
    this.#pump();
  }

  /** 401/403: renew the credentials (read again bypassing the cache, or a new token) and try once more at once. */
  #refreshAndRetry(job: Job, refresh: (status?: number) => Promise<boolean>, error: DeliveryAttemptError): void {
    job.refreshed = true;
    const failure = toFailure(this.#endpoint.name, error, job.attempt);
    let done = false;
    const forget = whenAborted(job.signal, () => {
      done = true;
      job.resolve({ ok: false, ...failure });
    });
    refresh(error.status).then(
      (renewed) => {
        forget();
        if (done) return;
        // Nothing new to send (read again too recently, or the same value): no point asking twice. A failure found
        // before sending (nothing was refused) keeps its own code, as in the no-refresh branch of #settle.
        const notSent = error.status === undefined && failure.error !== undefined;
        if (!renewed)
          return job.resolve({ ok: false, ...failure, error: notSent ? failure.error : 'CREDENTIALS_NOT_REFRESHED' });
        job.attempt++;
        this.#queue.push(job);
        this.#pump();
      },
      (refreshError: unknown) => {
        forget();
        if (done) return;
        const reason = refreshError instanceof Error ? refreshError.message : String(refreshError);
        job.resolve({ ok: false, ...failure, error: `CREDENTIALS_REFRESH_FAILED: ${reason}` });
      },
    );
  }

  #retryOrFail(job: Job, error: unknown): void {
    const failure = toFailure(this.#endpoint.name, error, job.attempt);
    if (failure.kind !== 'transient' || job.attempt >= this.#options.maxAttempts) {
      job.resolve({ ok: false, ...failure });
      return;
    }
    const retryAfterMs = error instanceof DeliveryAttemptError ? (error.retryAfterMs ?? 0) : 0;
    const wait = Math.max(retryDelayMs(job.attempt, this.#options, this.#random), retryAfterMs);
    if (Date.now() + wait >= job.deadlineAt || job.signal.aborted) {
      job.resolve({ ok: false, ...failure });
      return;
    }
    const timer = setTimeout(() => {
      forget();
      job.attempt++;
      this.#queue.push(job);
      this.#pump();
    }, wait);
    const forget = whenAborted(job.signal, () => {
      clearTimeout(timer);
      job.resolve({ ok: false, ...failure });
    });
  }

  close(): void {
    this.#held?.();
    this.#endpoint.close();
  }
}
