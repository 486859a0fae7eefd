import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LANE_ATTRIBUTE } from '../../lib/lanes';
import { sqsRecord } from '../support/events';
import { type Clock, FuzzEndpoint } from './endpoint';
import { checkLaneRound, type LaneObservation } from './lane-invariants';

/** A lane record of e0 whose retrySchedule (one wait) is spent: envelope `a` is 1, one more failure exhausts it. */
const record: SQSRecord = {
  ...sqsRecord('{}', { messageId: 'lane-1' }),
  messageAttributes: {
    [LANE_ATTRIBUTE]: { stringValue: JSON.stringify({ e: 'e0', k: 'k1', f: 0, a: 1, d: 0 }), dataType: 'String' },
  },
};

describe('L1 on a lane record dead-lettered as retries-exhausted (retrySchedule of one wait)', () => {
  let endpoint: FuzzEndpoint;
  beforeAll(async () => {
    const clock: Clock = { tick: 0 };
    endpoint = await FuzzEndpoint.start('e0', [{ kind: 'status', status: 503 }], clock, () => {});
  });
  beforeEach(() => endpoint.beginInvocation('down'));
  afterAll(() => endpoint.close());

  const exhausted = (attempts: string[], tokenHeld = false, detail = 'e0: 2 attempts failed'): LaneObservation => ({
    index: 1,
    round: { endpoint: 'e0', records: [record], inFlight: 1 },
    // Acknowledged: it is confirmed in the quarantine.
    response: { batchItemFailures: [] },
    answeredAt: 0,
    deadlineAt: 1,
    endpoints: [endpoint],
    ledgerBefore: undefined,
    ledgerAfter: undefined,
    quarantine: {
      sent: [{ record, reason: 'retries-exhausted', detail, endpoint: 'e0' }],
      confirmed: new Map([['lane-1', 1]]),
    },
    parked: { now: new Set(), ever: new Set() },
    problems: [],
    output: '{"message":"lane batch processed"}',
    secrets: [],
    strays: new Set(),
    schedule: [1],
    bound: { bound: 10, text: '' },
    attempts: new Map(attempts.length > 0 ? [['e0', attempts]] : []),
    tokenHeld,
  });

  it('passes when the endpoint read its request and answered 503', () => {
    endpoint.readNow.add('k1');
    endpoint.requestsNow = 1;
    expect(() => checkLaneRound(exhausted(['503']))).not.toThrow();
  });

  it('passes when a request the product sent went unread (cut by the product timeout)', () => {
    expect(() => checkLaneRound(exhausted(['TIMEOUT']))).not.toThrow();
  });

  it('passes when it failed on a token its OAuth server refused lately (no request goes out without a token)', () => {
    const detail = 'e0: 2 attempts failed, the last OAuth token endpoint http://127.0.0.1:1/token answered 503';
    expect(() => checkLaneRound(exhausted([], true, detail))).not.toThrow();
  });

  it('is broken when its OAuth server failed lately but the last failure was the breaker’s refusal', () => {
    const detail = 'e0: 2 attempts failed, the last CIRCUIT_OPEN';
    expect(() => checkLaneRound(exhausted([], true, detail))).toThrow(/lane-1 was dead-lettered as retries-exhausted/);
  });

  it('is broken when the product sent the endpoint no request of it (a breaker refusal counted as an attempt)', () => {
    expect(() => checkLaneRound(exhausted([]))).toThrow(
      /lane-1 was dead-lettered as retries-exhausted \(e0: 2 attempts failed\) though the product sent e0 no request of it in this invocation/,
    );
  });

  it('is broken when the requests the product sent were all read, none of them of this event', () => {
    endpoint.readNow.add('another-key');
    endpoint.requestsNow = 1;
    expect(() => checkLaneRound(exhausted(['503']))).toThrow(/lane-1 was dead-lettered as retries-exhausted/);
  });
});
