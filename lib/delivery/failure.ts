import { DeliveryAttemptError } from '../errors';
import type { DeliveryFailure } from '../types';

/** The last error of the delivery to `endpoint` after `attempts` attempts, as the failure the batch reports. */
export function toFailure(endpoint: string, error: unknown, attempts: number): DeliveryFailure {
  if (error instanceof DeliveryAttemptError) {
    const failure: DeliveryFailure = { endpoint, kind: error.kind, attempts };
    if (error.status !== undefined) failure.status = error.status;
    if (error.code !== undefined) failure.error = error.code;
    if (error.retryAfterMs !== undefined) failure.retryAfterS = Math.ceil(error.retryAfterMs / 1000);
    return failure;
  }
  return { endpoint, kind: 'transient', error: (error as Error)?.message ?? String(error), attempts };
}
