import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { whenAborted } from '../../lib/abort';

describe('whenAborted', () => {
  it('calls what is still registered when the signal aborts, through one listener per signal', () => {
    const controller = new AbortController();
    const called: string[] = [];
    const forgets = ['a', 'b', 'c'].map((name) => whenAborted(controller.signal, () => called.push(name)));
    for (let i = 0; i < 20; i++) whenAborted(controller.signal, () => undefined);
    // Node warns past 10 listeners on one signal: a batch registers one per request.
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    forgets[1]?.();
    controller.abort();
    expect(called).toEqual(['a', 'c']);
  });
});
