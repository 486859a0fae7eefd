import { whenAborted } from '../abort';

/** A FIFO queue: a plain array with a moving head, since shift() on a 10,000-item array copies it on every dequeue. */
export class JobQueue<T> {
  #items: T[] = [];
  #head = 0;

  push(item: T): void {
    this.#items.push(item);
  }

  /** The next item, left in the queue. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Removes the next item; once the removed part is most of the array (and 1024 items), it is dropped. */
  shift(): T | undefined {
    if (this.#head === this.#items.length) return;
    const item = this.#items[this.#head++];
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  get size(): number {
    return this.#items.length - this.#head;
  }
}

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
