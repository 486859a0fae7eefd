import type { DeliveryFailure } from '../types';
import type { PreparedRequest } from './endpoint';

export interface RetryOptions {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  breakerThreshold: number;
  breakerHalfOpenMs: number;
  maxConnections: number;
  /** Requests per second this instance may send the endpoint (token bucket); unlimited when absent. */
  rateLimitPerSecond?: number;
}

/**
 * The request of one delivery, prepared per attempt (signatures carry a timestamp), by lib/subscription/request.ts.
 * `refresh`, when there are credentials to renew, renews them after a 401/403; the next `prepare` uses the new ones.
 * It resolves false when there is nothing new to retry with (read again too recently, or the same value).
 */
export interface RequestSource {
  prepare(): PreparedRequest | Promise<PreparedRequest>;
  refresh?: (status?: number) => Promise<boolean>;
}

export type DeliveryResult =
  | { ok: true; endpoint: string; attempts: number; latencyMs: number; status: number }
  | ({ ok: false } & DeliveryFailure);

/** Called once with the final result of one delivery. */
export type DeliveryCallback = (result: DeliveryResult) => void;

/** One delivery on its way through an EndpointDelivery: queued, in flight, or waiting for its retry. */
export interface Job {
  request: RequestSource;
  signal: AbortSignal;
  deadlineAt: number;
  /** Set once the credentials were renewed after a 401/403: the next refusal is final. */
  refreshed: boolean;
  attempt: number;
  /** The breaker's failed trials when the job was queued: one failing after that fails the job. */
  trialsSeen: number;
  resolve: DeliveryCallback;
}

/** Puts a job back in its endpoint's queue for its next attempt. */
export type Requeue = (job: Job) => void;
