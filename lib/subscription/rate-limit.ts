import { whenAborted } from '../abort';

const MAX_TIMER_MS = 2 ** 31 - 1;

interface Waiter {
  resolve: (granted: boolean) => void;
  forget: () => void;
}

/**
 * A token bucket: `ratePerSecond` tokens a second, at most `capacity` saved up. `take` grants a token at once when
 * one is there; otherwise the caller waits its turn (first come, first served) until one is, or until its signal
 * aborts (the deadline wins: it then gets false).
 */
export class TokenBucket {
  readonly #rate: number;
  readonly #capacity: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedAt: number;
  readonly #waiters: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(ratePerSecond: number, capacity = Math.max(1, Math.ceil(ratePerSecond)), now = () => performance.now()) {
    this.#rate = ratePerSecond / 1000;
    this.#capacity = capacity;
    this.#now = now;
    this.#tokens = capacity;
    this.#updatedAt = now();
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#updatedAt) * this.#rate);
    this.#updatedAt = now;
  }

  /** True at once, or a promise of true when a token comes, or of false when `signal` aborts first. */
  take(signal: AbortSignal): true | Promise<boolean> {
    if (this.#waiters.length === 0) {
      this.#refill();
      if (this.#tokens >= 1) {
        this.#tokens -= 1;
        return true;
      }
    }
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        resolve,
        forget: whenAborted(signal, () => {
          const index = this.#waiters.indexOf(waiter);
          if (index >= 0) this.#waiters.splice(index, 1);
          resolve(false);
        }),
      };
      this.#waiters.push(waiter);
      this.#schedule();
    });
  }

  /** Returns a token taken for a request that did not go out (the breaker refused it): the first waiter gets it. */
  giveBack(): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.forget();
      waiter.resolve(true);
      return;
    }
    this.#refill();
    this.#tokens = Math.min(this.#capacity, this.#tokens + 1);
  }

  #schedule(): void {
    if (this.#timer || this.#waiters.length === 0) return;
    this.#refill();
    // Node fires a longer timer after 1 ms instead: sleep the longest it can hold and check again.
    const waitMs = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil((1 - this.#tokens) / this.#rate)));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#refill();
      while (this.#tokens >= 1 && this.#waiters.length > 0) {
        this.#tokens -= 1;
        const waiter = this.#waiters.shift()!;
        waiter.forget();
        waiter.resolve(true);
      }
      this.#schedule();
    }, waitMs);
  }
}
