// What a redrive throws, and how it words an error it passes on.

/** The redrive could not start or a move task failed; the message says what to check. */
export class RedriveError extends Error {
  override readonly name = 'RedriveError';
}

/** SQS did not answer one call in time; whether the call took effect is unknown. */
export class SqsCallTimeoutError extends Error {
  override readonly name = 'SqsCallTimeoutError';
  constructor(
    readonly call: string,
    readonly timeoutMs: number,
  ) {
    super(
      `${call}: no answer from SQS within ${timeoutMs / 1000} s (it may still have taken effect); check the network ` +
        'or SQS health, then run it again',
    );
  }
}

export function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
