import { whenAborted } from '../abort';
import { DeliveryAttemptError } from '../errors';
import type { DeliveryFailure, FailureKind } from '../types';
import type { Job, Requeue, RetryOptions } from './types';

/** Full jitter: a uniform delay in [0, min(max, base × 2^(attempt−1))). */
export function retryDelayMs(attempt: number, options: Pick<RetryOptions, 'baseMs' | 'maxMs'>, random = Math.random) {
  return Math.floor(random() * Math.min(options.maxMs, options.baseMs * 2 ** (attempt - 1)));
}

/**
 * How long `job` waits before its next attempt after a failure of `kind` (the endpoint's Retry-After if longer than
 * the backoff), or undefined when there is none: not transient, attempts used up, or past its deadline.
 */
export function retryWait(
  job: Job,
  kind: FailureKind,
  error: unknown,
  options: RetryOptions,
  random: () => number,
): number | undefined {
  if (kind !== 'transient' || job.attempt >= options.maxAttempts) return;
  const retryAfterMs = error instanceof DeliveryAttemptError ? (error.retryAfterMs ?? 0) : 0;
  const wait = Math.max(retryDelayMs(job.attempt, options, random), retryAfterMs);
  if (Date.now() + wait >= job.deadlineAt || job.signal.aborted) return;
  return wait;
}

/** Requeues `job` for its next attempt after `wait` ms, holding no connection; an abort ends it with `failure`. */
export function retryLater(job: Job, failure: DeliveryFailure, wait: number, requeue: Requeue): void {
  const timer = setTimeout(() => {
    forget();
    job.attempt++;
    requeue(job);
  }, wait);
  const forget = whenAborted(job.signal, () => {
    clearTimeout(timer);
    job.resolve({ ok: false, ...failure });
  });
}
