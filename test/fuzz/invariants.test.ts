import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Clock, FuzzEndpoint } from './endpoint';
import { checkInvariants, type Observation, recovered } from './invariants';
import type { ModelRecord, Scenario } from './scenario';

const scenario: Scenario = {
  endpoints: [[{ kind: 'status', status: 200 }]],
  subscriptions: [{ auth: 'none', signing: 'none', signingSecrets: 1 }],
  events: [],
  ledgerMode: 'redeliveries',
  redrive: undefined,
  fifo: false,
  quarantine: false,
  ledger: false,
  backoff: false,
  credentials: false,
  deliveryTimeoutMs: 40,
  maxAttempts: 1,
  breakerThreshold: 1,
  halfOpenMs: 10,
  maxConnections: 1,
  retryBaseDelayS: 0,
  retryMaxDelayS: 30,
  maxEventBytes: 1_000,
  invocations: [],
};

const fresh: ModelRecord = {
  record: {
    messageId: 'm-9',
    receiptHandle: 'rh-m-9-1',
    body: '{}',
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: '0',
      SenderId: 'AIDAFUZZ',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:source',
    awsRegion: 'us-east-1',
  },
  spec: { kind: 'valid', eventId: 109, group: 9 },
  key: 'fresh-key',
  poison: false,
  routed: new Set(['e0']),
};

describe('I4 in a recovery invocation (the endpoint answers 2xx, DELIVERY_TIMEOUT_MS 40 ms)', () => {
  let endpoint: FuzzEndpoint;
  beforeAll(async () => {
    const clock: Clock = { tick: 0 };
    endpoint = await FuzzEndpoint.start('e0', scenario.endpoints[0]!, clock, () => {});
  });
  beforeEach(() => endpoint.beginInvocation('healthy'));
  afterAll(() => endpoint.close());

  const recovery = (
    attempts: string[],
    { lastRecovery = false, loopDelayMaxMs = 0 }: { lastRecovery?: boolean; loopDelayMaxMs?: number } = {},
  ): Observation => ({
    scenario,
    index: 1,
    recovery: true,
    lastRecovery,
    // The fresh record is reported failed: I1 then asks nothing of it.
    batch: [fresh],
    response: { batchItemFailures: [{ itemIdentifier: 'm-9' }] },
    answeredAt: 0,
    deadlineAt: 1,
    endpoints: [endpoint],
    attempts: new Map(attempts.length > 0 ? [['e0', attempts]] : []),
    written: new Map([['e0', 1]]),
    loopDelayMaxMs,
    ledgerBefore: undefined,
    ledgerAfter: undefined,
    quarantine: undefined,
    visibility: [],
    output: '{"message":"batch processed"}',
    problems: [],
    tokenFailedAt: undefined,
    secrets: [],
  });
  const starved = { loopDelayMaxMs: 25 };

  it('passes when the product saw the endpoint answer 2xx', () => {
    const o = recovery(['TIMEOUT', '200']);
    expect(recovered(o, endpoint)).toBe(true);
    expect(() => checkInvariants({ ...o, lastRecovery: true })).not.toThrow();
  });

  it('passes when the endpoint read the request of the event new in this invocation, though it timed out', () => {
    endpoint.readNow.add('fresh-key');
    expect(recovered(recovery(['TIMEOUT']), endpoint)).toBe(true);
    expect(() => checkInvariants(recovery(['TIMEOUT'], { lastRecovery: true }))).not.toThrow();
  });

  it('is broken when the product sent the endpoint no request (the breaker or its lane held it)', () => {
    expect(() => checkInvariants(recovery([], starved))).toThrow(/e0 answers 2xx again but was sent no request/);
  });

  it('does not count a late read of a request of the invocation before', () => {
    endpoint.requestsNow = 1;
    endpoint.readNow.add('older-event-key');
    expect(recovered(recovery(['TIMEOUT', 'TIMEOUT', 'TIMEOUT'], starved), endpoint)).toBe(false);
    expect(() =>
      checkInvariants(recovery(['TIMEOUT', 'TIMEOUT', 'TIMEOUT'], { lastRecovery: true, ...starved })),
    ).toThrow(/no request sent to it got a 2xx in any recovery invocation/);
  });

  it('is broken at once when every request timed out but the process was not starved (a pool that never writes)', () => {
    expect(() => checkInvariants(recovery(['TIMEOUT', 'TIMEOUT'], { loopDelayMaxMs: 19 }))).toThrow(
      /every request sent to it timed out, and the process was not starved \(ended: TIMEOUT, TIMEOUT; undici wrote 1 request\(s\) to it; event loop held up 19 ms at most, DELIVERY_TIMEOUT_MS 40 ms\)/,
    );
  });

  it('asks for another recovery when every request timed out in a starved process', () => {
    const o = recovery(['TIMEOUT', 'TIMEOUT'], starved);
    expect(() => checkInvariants(o)).not.toThrow();
    expect(recovered(o, endpoint)).toBe(false);
  });

  it('is broken when that still holds in the last recovery invocation', () => {
    expect(() => checkInvariants(recovery(['TIMEOUT'], { lastRecovery: true, ...starved }))).toThrow(
      /e0 answers 2xx again but no request sent to it got a 2xx in any recovery invocation: each ended on DELIVERY_TIMEOUT_MS in a starved process/,
    );
  });

  it('is broken when a request ended otherwise than on the product timeout, starved or not', () => {
    expect(() => checkInvariants(recovery(['TIMEOUT', 'REQUEST_ERROR'], starved))).toThrow(
      /no request sent to it in this recovery got a 2xx \(ended: TIMEOUT, REQUEST_ERROR;/,
    );
  });
});
