import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clock, FuzzEndpoint } from './endpoint';
import { checkInvariants, type Observation } from './invariants';
import type { Scenario } from './scenario';

const scenario: Scenario = {
  endpoints: [[{ kind: 'status', status: 200 }]],
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

describe('I4 in a recovery invocation whose endpoint received no request', () => {
  let endpoint: FuzzEndpoint;
  beforeAll(async () => {
    const clock: Clock = { tick: 0 };
    endpoint = await FuzzEndpoint.start('e0', scenario.endpoints[0]!, clock, () => {});
    endpoint.beginInvocation('healthy');
  });
  afterAll(() => endpoint.close());

  const recovery = (attempts: string[], lastRecovery: boolean): Observation => ({
    scenario,
    index: 1,
    recovery: true,
    lastRecovery,
    batch: [],
    response: { batchItemFailures: [] },
    answeredAt: 0,
    deadlineAt: 1,
    endpoints: [endpoint],
    attempts: new Map(attempts.length > 0 ? [['e0', attempts]] : []),
    ledgerBefore: undefined,
    ledgerAfter: undefined,
    quarantine: undefined,
    visibility: [],
    output: '{"message":"batch processed"}',
    unauthenticated: [],
  });

  it('is broken when the product sent the endpoint no request (the breaker or its lane held it)', () => {
    expect(() => checkInvariants(recovery([], false))).toThrow(/e0 answers 2xx again but was sent no request/);
  });

  it('is broken when the endpoint read a request but the product sent it none in this invocation', () => {
    endpoint.requestsNow = 1;
    try {
      expect(() => checkInvariants(recovery([], false))).toThrow(/e0 answers 2xx again but was sent no request/);
      expect(() => checkInvariants(recovery(['200'], false))).not.toThrow();
    } finally {
      endpoint.requestsNow = 0;
    }
  });

  it('is broken when requests were sent but ended otherwise than on the product timeout', () => {
    expect(() => checkInvariants(recovery(['TIMEOUT', 'REQUEST_ERROR'], false))).toThrow(
      /read none of the requests sent to it \(ended: TIMEOUT, REQUEST_ERROR\)/,
    );
  });

  it('waits for another recovery when every request sent ended on DELIVERY_TIMEOUT_MS (a stalled process)', () => {
    expect(() => checkInvariants(recovery(['TIMEOUT', 'TIMEOUT'], false))).not.toThrow();
  });

  it('is broken when that still holds in the last recovery invocation', () => {
    expect(() => checkInvariants(recovery(['TIMEOUT'], true))).toThrow(
      /received no request in any recovery invocation: every request sent to it ended on DELIVERY_TIMEOUT_MS \(40 ms\)/,
    );
  });
});
