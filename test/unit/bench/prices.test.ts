import { describe, expect, it } from 'vitest';
import { outageCost, parkedEventOps, redeliveriesBeforePark } from '../../bench/prices';

describe('the cost model of parking (BENCHMARKS.md table 11)', () => {
  it('a wait longer than SQS’s 900 s timer costs a hop (receive + send + delete) every 900 s', () => {
    // 7,200 s = 8 receives: 7 re-delays and the delivering attempt; the park is the first send.
    expect(parkedEventOps([7200], 1)).toEqual({ sends: 8, receives: 8, deletes: 8 });
    expect(parkedEventOps([900], 1)).toEqual({ sends: 1, receives: 1, deletes: 1 });
    expect(parkedEventOps([901], 1)).toEqual({ sends: 2, receives: 2, deletes: 2 });
  });

  it('an event that exhausts the schedule ends with one more send: to the DLQ', () => {
    expect(parkedEventOps([5, 60], 2)).toEqual({ sends: 2, receives: 2, deletes: 2 });
    expect(parkedEventOps([5, 60], 3)).toEqual({ sends: 3, receives: 2, deletes: 2 });
  });

  it('an outage shorter than the first wait: every event delivered at its first lane attempt', () => {
    const cost = outageCost([5, 60], 2, 3);
    expect(cost.parked).toBe(6);
    expect(cost.ops).toEqual({ sends: 6, receives: 6, deletes: 6 });
    expect(cost.exhausted).toBe(0);
    expect(cost.drainS).toBe(4);
  });

  it('an outage longer than the whole schedule dead-letters the events parked early, not the later ones', () => {
    const cost = outageCost([5], 1, 10);
    expect(cost.exhausted).toBe(5);
    expect(cost.ops.sends).toBe(15);
    // While it is down only the early ones had their attempt (at t + 5 < 10).
    expect(cost.receivesDuring).toBe(5);
  });

  it('source redeliveries before parking follow the function’s backoff (10 s doubling, jittered down to half)', () => {
    const policy = { baseDelayS: 10, maxDelayS: 900 };
    expect(redeliveriesBeforePark(300, policy, () => 0.999)).toBe(5);
    expect(redeliveriesBeforePark(300, policy, () => 0)).toBe(6);
    expect(redeliveriesBeforePark(0, policy, () => 0)).toBe(0);
    // Without a backoff the count has no bound the model can give (and the loop must end).
    expect(redeliveriesBeforePark(300, { baseDelayS: 0, maxDelayS: 0 }, () => 0)).toBe(Number.POSITIVE_INFINITY);
  });
});
