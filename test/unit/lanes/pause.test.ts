import { describe, expect, it } from 'vitest';
import { ReadTimeoutError } from '../../../lib/credentials/last-good';
import { createPauseReader } from '../../../lib/lanes/pause';

/** Lane tag reads the test answers: by a table, or by hand when `manual` is set. */
function tags(paused: Record<string, boolean>) {
  const calls: string[] = [];
  const pending: Array<{ resolve: (value: boolean) => void; reject: (error: Error) => void }> = [];
  const state = { fail: false, manual: false };
  const read = (endpoint: string) => {
    calls.push(endpoint);
    if (state.manual) return new Promise<boolean>((resolve, reject) => pending.push({ resolve, reject }));
    if (state.fail) return Promise.reject(new Error('AWS.SimpleQueueService.NonExistentQueue'));
    return Promise.resolve(paused[endpoint] ?? false);
  };
  return { read, calls, pending, state, paused };
}

const open = () => new AbortController().signal;

describe('createPauseReader: which endpoints are paused, from their lanes’ tags, never failing a batch', () => {
  it('reads every lane asked about and names the paused ones', async () => {
    const lanes = tags({ beta: true });
    const read = createPauseReader(lanes.read);
    const result = await read(['alpha', 'beta'], open());
    expect([...result.paused]).toEqual(['beta']);
    expect(result.errors).toEqual([]);
    expect(lanes.calls.sort()).toEqual(['alpha', 'beta']);
  });

  it('asks SQS again only once the cache age has passed, and then sees a resume', async () => {
    let clock = 1_000_000;
    const lanes = tags({ beta: true });
    const read = createPauseReader(lanes.read, { cacheMs: 30_000, now: () => clock });
    await read(['beta'], open());
    lanes.paused.beta = false;
    clock = 1_029_999;
    expect([...(await read(['beta'], open())).paused]).toEqual(['beta']);
    expect(lanes.calls).toEqual(['beta']);
    clock = 1_030_000;
    expect([...(await read(['beta'], open())).paused]).toEqual([]);
    expect(lanes.calls).toEqual(['beta', 'beta']);
  });

  it('reads again within the cache age when asked for a fresh answer (a paused lane’s batch: resumed?)', async () => {
    const lanes = tags({ beta: true });
    const read = createPauseReader(lanes.read, { cacheMs: 30_000, now: () => 0 });
    await read(['alpha', 'beta'], open());
    lanes.paused.beta = false;
    expect([...(await read(['beta'], open(), { fresh: true })).paused]).toEqual([]);
    expect(lanes.calls.sort()).toEqual(['alpha', 'beta', 'beta']);
  });

  it('keeps the last good answer of a lane whose read fails, and says so', async () => {
    let clock = 0;
    const lanes = tags({ beta: true });
    const read = createPauseReader(lanes.read, { cacheMs: 1, now: () => clock });
    await read(['beta'], open());
    lanes.state.fail = true;
    clock = 10;
    const result = await read(['beta'], open());
    expect([...result.paused]).toEqual(['beta']);
    expect(result.errors).toHaveLength(1);
    expect(String(result.errors[0]!.error)).toContain('NonExistentQueue');
  });

  it('keeps a failed read for the cache age too: a missing lane costs one call per 30 s, not one per batch', async () => {
    let clock = 1_000_000;
    const lanes = tags({ beta: true });
    lanes.state.fail = true;
    const read = createPauseReader(lanes.read, { cacheMs: 30_000, now: () => clock });
    await read(['beta'], open());
    const second = await read(['beta'], open());
    expect(second.errors).toHaveLength(1);
    expect(lanes.calls).toEqual(['beta']);
    lanes.state.fail = false;
    clock += 30_000;
    expect([...(await read(['beta'], open())).paused]).toEqual(['beta']);
    expect(lanes.calls).toEqual(['beta', 'beta']);
  });

  it('counts a lane never read successfully as not paused', async () => {
    const lanes = tags({ beta: true });
    lanes.state.fail = true;
    const result = await createPauseReader(lanes.read)(['beta'], open());
    expect([...result.paused]).toEqual([]);
    expect(result.errors.map((e) => e.endpoint)).toEqual(['beta']);
  });

  it('answers by the deadline with the last good value while a hung read goes on', async () => {
    let clock = 0;
    const lanes = tags({ beta: true });
    const read = createPauseReader(lanes.read, { cacheMs: 1, now: () => clock });
    await read(['beta'], open());
    lanes.state.manual = true;
    clock = 10;
    const deadline = new AbortController();
    const late = read(['beta'], deadline.signal);
    deadline.abort();
    const result = await late;
    expect([...result.paused]).toEqual(['beta']);
    expect(result.errors[0]!.error).toBeInstanceOf(ReadTimeoutError);
    // The hung read finishes later and serves the next invocation, which starts no second call meanwhile.
    expect(lanes.pending).toHaveLength(1);
    lanes.pending[0]!.resolve(false);
    const next = await read(['beta'], open());
    expect([...next.paused]).toEqual([]);
  });

  it('answers a cold start by the deadline, not paused, when the very first read hangs', async () => {
    const lanes = tags({});
    lanes.state.manual = true;
    const deadline = new AbortController();
    const result = createPauseReader(lanes.read, { firstReadMs: 60_000 })(['alpha'], deadline.signal);
    deadline.abort();
    expect(await result).toEqual({
      paused: new Set(),
      errors: [{ endpoint: 'alpha', error: expect.any(ReadTimeoutError) }],
    });
  });

  it('gives up on a hung first read after the first-read bound, well before a long deadline', async () => {
    const lanes = tags({});
    lanes.state.manual = true;
    const result = await createPauseReader(lanes.read, { firstReadMs: 1 })(['alpha'], open());
    expect(result.paused.size).toBe(0);
    expect(result.errors[0]!.error).toBeInstanceOf(ReadTimeoutError);
  });
});
