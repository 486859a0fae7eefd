/** What a read gave this invocation: its value (fresh, or the last good one) and the error, if the read failed. */
export interface Read<T> {
  value: T | undefined;
  /** Set when this invocation's read failed or was not back in time (`value` is then the last good one, if any). */
  error?: unknown;
}

/** The read did not finish before the invocation had to go on. */
export class ReadTimeoutError extends Error {
  override readonly name = 'ReadTimeoutError';
}

/**
 * Wraps a per-invocation read of secrets (SSM, Secrets Manager) so that it never holds up or fails a batch: the read is
 * bounded by the invocation's deadline and, when a good value is already known, by `staleAfterMs` (the read then goes
 * on in the background and serves the next invocation); a read that fails or is late gives the last good value.
 */
export function lastGood<T>(read: () => Promise<T>, staleAfterMs = 1000): (signal: AbortSignal) => Promise<Read<T>> {
  let last: { value: T } | undefined;
  // Each invocation reads for itself (within the cache age that read makes no call): a hung read holds up no other.
  const start = (): Promise<Read<T>> =>
    read().then(
      (value): Read<T> => {
        last = { value };
        return { value };
      },
      (error: unknown): Read<T> => ({ value: last?.value, error }),
    );
  return (signal) => {
    const reading = start();
    if (signal.aborted) return Promise.resolve({ value: last?.value, error: new ReadTimeoutError('deadline passed') });
    return new Promise<Read<T>>((resolve) => {
      const late = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', late);
        resolve({ value: last?.value, error: new ReadTimeoutError('not read before the deadline') });
      };
      // Without a known value there is nothing to fall back on: wait until the deadline.
      const timer = last ? setTimeout(late, staleAfterMs) : undefined;
      signal.addEventListener('abort', late, { once: true });
      void reading.then((result) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', late);
        resolve(result);
      });
    });
  };
}
