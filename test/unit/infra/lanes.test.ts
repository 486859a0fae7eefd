import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RETRY_SCHEDULE_S,
  LANE_QUEUE_NAME_LIMIT,
  laneConcurrency,
  laneProblems,
  lanesParam,
  retryScheduleOf,
} from '../../../infra/stage/lanes';
import { DEFAULT_RETRY_SCHEDULE } from '../../../lib/subscription/schema';

// The package-time checks of the lanes (infra/stage/lanes.ts): names SQS accepts, schedules the lane's retention holds.
const stage = {
  service: 'ingest-fanout',
  stage: 'prod',
  endpoints: [{ name: 'crm' }],
  document: undefined,
  parkAfterS: 300,
  laneRetentionS: 345_600,
  deadLetteredAfterS: 2_000,
};

describe('laneProblems', () => {
  it('accepts the default stage: the default schedule, parkAfterS and a day fit in 4 days', () => {
    expect(laneProblems(stage)).toEqual([]);
    expect(DEFAULT_RETRY_SCHEDULE_S.reduce((a, b) => a + b, 0)).toBe(99_365);
  });

  it("checks the function's own default schedule, not a copy that could drift from it", () => {
    expect(DEFAULT_RETRY_SCHEDULE_S).toBe(DEFAULT_RETRY_SCHEDULE);
  });

  it('refuses a lane queue name over 80 characters, naming the endpoint and the limit; accepts exactly 80', () => {
    const prefix = 'ingest-fanout-prod-lane-';
    const fits = 'a'.repeat(LANE_QUEUE_NAME_LIMIT - prefix.length);
    expect(laneProblems({ ...stage, endpoints: [{ name: fits }] })).toEqual([]);
    expect(laneProblems({ ...stage, endpoints: [{ name: `${fits}b` }] })).toEqual([
      `endpoint '${fits}b': its lane queue '${prefix}${fits}b' has 81 characters, over SQS's 80 per queue name: ` +
        'shorten the endpoint or stage name by 1 characters',
    ]);
  });

  it("reads an endpoint's retrySchedule from the endpoints file and refuses one the lane's retention cannot hold", () => {
    const document = { endpoints: [{ name: 'crm', retrySchedule: [60, 259_000] }, { name: 'other' }] };
    expect(retryScheduleOf(document, 'crm')).toEqual([60, 259_000]);
    expect(retryScheduleOf(document, 'other')).toEqual(DEFAULT_RETRY_SCHEDULE_S);
    expect(retryScheduleOf('not a document', 'crm')).toEqual(DEFAULT_RETRY_SCHEDULE_S);
    // 259,060 + 300 + 86,400 = 345,760 > 345,600.
    expect(laneProblems({ ...stage, document })).toEqual([
      "endpoint 'crm': its retrySchedule (259060 s in all) + parkAfterS (300) + one day (86400) = 345760 s must be " +
        "whole seconds within the lane's retention (param laneRetentionS, 345600 s): shorten the schedule or raise " +
        'laneRetentionS (at most 1209600)',
    ]);
    expect(laneProblems({ ...stage, document, laneRetentionS: 345_760 })).toEqual([]);
  });

  it('refuses a parkAfterS at which failing records are already dead-lettered', () => {
    expect(laneProblems({ ...stage, parkAfterS: 2_000 })[0]).toMatch(
      /^param 'parkAfterS' is 2000, but a record failing at every receive can reach the dead-letter queue after 2000 s/,
    );
    expect(laneProblems({ ...stage, parkAfterS: 1_999, laneRetentionS: 1_209_600 })).toEqual([]);
  });
});

describe('lanesParam (the stage param lanes)', () => {
  it('gives standard stages lanes and FIFO stages none by default (auto), lets false opt out', () => {
    for (const value of ['auto', '', undefined]) {
      expect(lanesParam(value, false)).toEqual({ lanes: true });
      expect(lanesParam(value, true)).toEqual({ lanes: false });
    }
    for (const value of [false, 'false']) expect(lanesParam(value, false)).toEqual({ lanes: false });
    for (const value of [true, 'true']) expect(lanesParam(value, false)).toEqual({ lanes: true });
  });

  it('refuses true on a FIFO stage and anything else, naming the param and what to write', () => {
    expect(lanesParam(true, true)).toEqual({
      problem:
        "param 'lanes' is true on a FIFO stage (param 'fifo' true): FIFO stages have no lanes (per-group order). " +
        'Set lanes to auto or false, or fifo to false',
    });
    expect(lanesParam('yes', false)).toEqual({
      problem: `param 'lanes' is "yes": use auto (standard stages get lanes, FIFO stages none), true or false`,
    });
  });
});

describe('laneConcurrency', () => {
  it("takes the source path's concurrency without a budget, else what the budget leaves, at least Lambda's 2", () => {
    expect(laneConcurrency(10, undefined)).toBe(10);
    expect(laneConcurrency(10, 15)).toBe(5);
    expect(laneConcurrency(10, 11)).toBe(2);
    expect(laneConcurrency(10, 40)).toBe(10);
  });
});
