import { whenAborted } from '../abort';

/**
 * Calls `wake` when a held queue may move again: when the breaker's trial ends (`'trial'`: the caller wakes it then),
 * at the half-open time `until` (epoch ms), or when `signal` aborts. Returns the cancellation of that wake-up.
 */
export function wakeWhenHeld(signal: AbortSignal, until: 'trial' | number, wake: () => void): () => void {
  const timer = until === 'trial' ? undefined : setTimeout(wake, Math.max(0, until - Date.now()));
  const forget = whenAborted(signal, wake);
  return () => {
    clearTimeout(timer);
    forget();
  };
}
