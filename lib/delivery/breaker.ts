import { DeliveryAttemptError } from '../errors';

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

  /**
   * An attempt failed with `error`: a transient failure counts; one cut, or failed before sending, tells nothing
   * about the endpoint; any other answer (a 4xx, a 3xx) shows it is up.
   */
  failedWith(error: unknown): void {
    if (!(error instanceof DeliveryAttemptError) || error.kind === 'transient') this.failed();
    // Cut by the deadline, or failed before sending (a malformed secret): nothing says whether the endpoint is up.
    else if (error.kind === 'aborted' || error.status === undefined) this.abandoned();
    else this.succeeded();
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
