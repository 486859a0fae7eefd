// One 'abort' listener per signal fans out to the requests in flight: EventTarget add/remove per request is costly.
const inFlight = new WeakMap<AbortSignal, Set<() => void>>();

/** Calls `callback` when `signal` aborts; returns what forgets it (to call once the work it would cut has ended). */
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
