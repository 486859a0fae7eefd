import { whenAborted } from '../abort';
import { DeliveryAttemptError } from '../errors';
import { toFailure } from './failure';
import type { Job, Requeue } from './types';

/**
 * Settles a 401/403 of `job` to `endpoint`: with no credential to renew it fails at once; otherwise the credential is
 * renewed once and the job requeued. False when `error` is not one it settles (another failure, or a second refusal).
 */
export function settleUnauthorized(job: Job, error: unknown, endpoint: string, requeue: Requeue): boolean {
  if (!(error instanceof DeliveryAttemptError) || error.kind !== 'unauthorized') return false;
  const { refresh } = job.request;
  if (refresh === undefined) {
    // No credential configured for the endpoint, so none to read again: the log must not say it was.
    const failure = toFailure(endpoint, error, job.attempt);
    // A failure found before sending (e.g. INVALID_HEADER_VALUE) keeps its own code.
    const code = error.status === undefined && failure.error ? failure.error : 'CREDENTIALS_NONE';
    job.resolve({ ok: false, ...failure, error: code });
    return true;
  }
  if (job.refreshed) return false;
  refreshAndRetry(job, refresh, error, endpoint, requeue);
  return true;
}

/** 401/403: renew the credentials (read again bypassing the cache, or a new token) and try once more at once. */
function refreshAndRetry(
  job: Job,
  refresh: (status?: number) => Promise<boolean>,
  error: DeliveryAttemptError,
  endpoint: string,
  requeue: Requeue,
): void {
  job.refreshed = true;
  const failure = toFailure(endpoint, error, job.attempt);
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
      // before sending (nothing was refused) keeps its own code, as when there is no credential to renew.
      const notSent = error.status === undefined && failure.error !== undefined;
      if (!renewed)
        return job.resolve({ ok: false, ...failure, error: notSent ? failure.error : 'CREDENTIALS_NOT_REFRESHED' });
      job.attempt++;
      requeue(job);
    },
    (refreshError: unknown) => {
      forget();
      if (done) return;
      const reason = refreshError instanceof Error ? refreshError.message : String(refreshError);
      job.resolve({ ok: false, ...failure, error: `CREDENTIALS_REFRESH_FAILED: ${reason}` });
    },
  );
}
