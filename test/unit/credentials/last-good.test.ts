import { describe, expect, it } from 'vitest';
import { lastGood, ReadTimeoutError } from '../../../lib/credentials/last-good';

/** A read the test answers by hand. */
function manualRead() {
  const calls: Array<{ resolve: (value: string) => void; reject: (error: Error) => void }> = [];
  const read = () => new Promise<string>((resolve, reject) => calls.push({ resolve, reject }));
  return { read, calls };
}

describe('lastGood: a per-invocation read of secrets that never holds up or fails a batch', () => {
  it('gives the fresh value when the read answers', async () => {
    const read = lastGood(async () => 'v1');
    await expect(read(new AbortController().signal)).resolves.toEqual({ value: 'v1' });
  });

  it('gives the last good value, with the error, when a later read fails', async () => {
    let fail = false;
    const read = lastGood(async () => {
      if (fail) throw new Error('ThrottlingException');
      return 'v1';
    });
    await read(new AbortController().signal);
    fail = true;
    const result = await read(new AbortController().signal);
    expect(result.value).toBe('v1');
    expect(String(result.error)).toContain('ThrottlingException');
  });

  it('gives no value, with the error, when no read ever succeeded', async () => {
    const read = lastGood(async () => {
      throw new Error('AccessDenied');
    });
    const result = await read(new AbortController().signal);
    expect(result.value).toBeUndefined();
    expect(String(result.error)).toContain('AccessDenied');
  });

  it('stops waiting at the deadline, and a value known before is served while the read goes on', async () => {
    const { read, calls } = manualRead();
    const bounded = lastGood(read, 60_000);
    const first = bounded(new AbortController().signal);
    calls[0]!.resolve('v1');
    await first;
    const deadline = new AbortController();
    const second = bounded(deadline.signal);
    deadline.abort();
    const result = await second;
    expect(result.value).toBe('v1');
    expect(result.error).toBeInstanceOf(ReadTimeoutError);
    // The read that was late still lands: the next invocation has its value even if its own read is late too.
    calls[1]!.resolve('v2');
    await Promise.resolve();
    const passed = new AbortController();
    passed.abort();
    await expect(bounded(passed.signal)).resolves.toMatchObject({ value: 'v2' });
  });

  it('answers at once when the deadline has already passed', async () => {
    const { read } = manualRead();
    const deadline = new AbortController();
    deadline.abort();
    const result = await lastGood(read)(deadline.signal);
    expect(result).toMatchObject({ value: undefined });
    expect(result.error).toBeInstanceOf(ReadTimeoutError);
  });
});
