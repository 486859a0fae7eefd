import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SqsCallTimeoutError } from '../../../lib/redrive/errors';
// The deadline every SQS call of a redrive runs under, tested on its own (the door does not export it).
import { callTimeoutOf, within } from '../../../lib/redrive/sqs-call';

describe('within: the deadline of one SQS call', () => {
  it('hands the call a signal that fires after the timeout and gives up then, naming the call', async () => {
    let given: AbortSignal | undefined;
    const never = (signal: AbortSignal) => {
      given = signal;
      return new Promise<never>(() => {});
    };
    const error = await within('ReceiveMessage', 50, never).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SqsCallTimeoutError);
    expect(error).toMatchObject({ call: 'ReceiveMessage', timeoutMs: 50 });
    expect(given?.aborted).toBe(true);
  });

  it('leaves no listener on the signal of a call that answered: a run of many calls holds nothing for their timeouts', async () => {
    const signals: AbortSignal[] = [];
    for (let i = 0; i < 3; i += 1) {
      const answer = await within('DeleteMessageBatch', 30_000, async (signal) => {
        signals.push(signal);
        return i;
      });
      expect(answer).toBe(i);
    }
    expect(signals.map((signal) => getEventListeners(signal, 'abort').length)).toEqual([0, 0, 0]);
  });

  it("passes on the call's own error, not a timeout, and leaves no listener then either", async () => {
    let given: AbortSignal | undefined;
    const refused = within('SendMessageBatch', 30_000, async (signal) => {
      given = signal;
      throw new Error('AccessDenied');
    });
    await expect(refused).rejects.toThrow('AccessDenied');
    expect(given && getEventListeners(given, 'abort')).toEqual([]);
  });

  it('allows 30 s by default, a long poll’s wait on top', () => {
    expect(callTimeoutOf({ from: 'q' })).toBe(30_000);
    expect(callTimeoutOf({ from: 'q', callTimeoutMs: 500 }, 20)).toBe(20_500);
  });
});
