// Every SQS call of a redrive has a deadline: a stalled connection would otherwise hold the run, and what it holds.
import { SqsCallTimeoutError } from './errors';
import type { RedriveOptions } from './types';

/** SQS's most entries in one batch call. */
export const SEND_MAX_ENTRIES = 10;

/** SQS's most message attributes on one message. */
export const SQS_MAX_ATTRIBUTES = 10;

// SQS answers in well under a second; 30 s rides out a slow network without keeping a stuck run alive long.
const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** How long one SQS call may take, a long poll's wait on top. */
export function callTimeoutOf(options: RedriveOptions, waitS = 0): number {
  return (options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS) + waitS * 1_000;
}

/**
 * Runs one SQS call with an abort signal that fires after `timeoutMs`, and gives up on it then even if the client does
 * not honour the signal: the caller must treat the call's effect as unknown.
 */
export async function within<T>(
  name: string,
  timeoutMs: number,
  call: (abortSignal: AbortSignal) => Promise<T>,
): Promise<T> {
  const signal = AbortSignal.timeout(timeoutMs);
  let onAbort = () => {};
  const timedOut = new Promise<never>((_, reject) => {
    onAbort = () => reject(new SqsCallTimeoutError(name, timeoutMs));
    // No `once`: 'abort' fires once, and the `finally` removes the listener of a call that answered first.
    signal.addEventListener('abort', onAbort);
  });
  try {
    return await Promise.race([call(signal), timedOut]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
