import type { FailureKind } from './types';

/** A configuration value is missing or malformed; the message names the variable and the fix. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

/** One record an SQS batch call did not take, and why. */
export interface MessageFailure {
  messageId: string;
  error: string;
}

/** The first few failures, for an error message that says which records. */
export function sampleFailures(failures: readonly MessageFailure[]): string {
  return failures
    .slice(0, 3)
    .map((failure) => `${failure.messageId}: ${failure.error}`)
    .join('; ');
}

/** One attempt of one delivery failed; `kind` decides whether it is retried. */
export class DeliveryAttemptError extends Error {
  override readonly name = 'DeliveryAttemptError';
  constructor(
    readonly kind: Exclude<FailureKind, 'circuit-open' | 'paused'>,
    readonly endpoint: string,
    message: string,
    readonly status?: number,
    readonly code?: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** An error as one log field: its name and message, or the thrown value as text. */
export function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
