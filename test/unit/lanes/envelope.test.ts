import type { SQSRecord } from 'aws-lambda';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createLanes,
  decodeEnvelope,
  encodeEnvelope,
  LANE_ATTRIBUTE,
  type LaneSender,
  laneOf,
} from '../../../lib/lanes';
// Read by the source path (lib/batch) beside the envelope; the door, lib/lanes/index.ts, does not export it.
import { laneEndpointOf } from '../../../lib/lanes/envelope';
import { sqsRecord } from '../../support/events';

function withAttribute(value: string | undefined): SQSRecord {
  const record = sqsRecord('{}');
  if (value !== undefined) {
    record.messageAttributes = {
      [LANE_ATTRIBUTE]: { dataType: 'String', stringValue: value, stringListValues: [], binaryListValues: [] },
    };
  }
  return record;
}

describe('lane envelope', () => {
  it('decodes what it encodes, for the lane of the endpoint it names (property)', () => {
    const envelope = fc.record({
      e: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/),
      k: fc.string({ minLength: 1 }),
      f: fc.nat(),
      a: fc.integer({ min: 1, max: 21 }),
      d: fc.nat(),
    });
    fc.assert(
      fc.property(envelope, (value) => {
        expect(decodeEnvelope(withAttribute(encodeEnvelope(value)), value.e)).toEqual({ ok: true, envelope: value });
      }),
    );
  });

  it.each([
    [undefined, "no 'ingest.lane' message attribute"],
    ['{', "'ingest.lane' is not JSON"],
    ['{"e":"beta","k":"x","f":1,"a":0,"d":1}', 'bad or missing field: a'],
    ['{"e":"beta","k":"x","f":1,"a":1}', 'bad or missing field: d'],
    ['{"e":"beta","k":"x","f":1,"a":1,"d":1,"z":1}', 'bad or missing field: (root)'],
    ['"beta"', 'bad or missing field: (root)'],
    ['{"e":"beta","k":"","f":-1,"a":1,"d":1}', 'bad or missing field: k, f'],
    ['{"e":"alpha","k":"x","f":1,"a":1,"d":1}', "names endpoint 'alpha', not this lane's 'beta'"],
  ])('refuses %j in beta’s lane, saying why', (value, reason) => {
    const decoded = decodeEnvelope(withAttribute(value), 'beta');
    expect(decoded.ok).toBe(false);
    expect(decoded.ok ? '' : decoded.reason).toContain(reason);
  });
});

describe('laneEndpointOf (a lane copy redriven to the source queue)', () => {
  it.each([
    ['{"e":"beta","k":"x","f":1,"a":0,"d":1}', 'beta'],
    ['{"e":"beta"}', 'beta'],
    ['{"e":7}', undefined],
    ['{}', undefined],
    ['null', undefined],
    ['{', undefined],
    [undefined, undefined],
  ])('reads %j as endpoint %j, whatever the rest of the envelope', (value, endpoint) => {
    expect(laneEndpointOf(withAttribute(value))).toBe(endpoint);
  });
});

describe('createLanes', () => {
  const prefix = 'https://sqs.us-east-1.amazonaws.com/123456789012/ingest-fanout-prod-lane-';
  const send: LaneSender = async (messages) => ({ parked: messages.map(() => true), errors: [] });
  const endpoints = [
    { name: 'crm', url: new URL('https://crm.example.com/in'), retrySchedule: [60, 600] },
    { name: 'audit', url: new URL('https://audit.example.com/in') },
  ];

  const fallback = [1, 2, 3];

  it('is off without LANE_QUEUE_URL_PREFIX or without a sender', () => {
    expect(createLanes({ endpoints, laneRetrySchedule: fallback }, send)).toBeUndefined();
    expect(
      createLanes({ endpoints, laneQueueUrlPrefix: prefix, laneRetrySchedule: fallback }, undefined),
    ).toBeUndefined();
  });

  it("keeps each endpoint's schedule (LANE_RETRY_SCHEDULE's when it sets none) and the lane names", () => {
    const lanes = createLanes({ endpoints, laneQueueUrlPrefix: prefix, laneRetrySchedule: fallback }, send);
    expect(lanes?.send).toBe(send);
    expect(lanes?.schedule('crm')).toEqual([60, 600]);
    expect(lanes?.schedule('audit')).toEqual(fallback);
    expect(lanes?.schedule('removed')).toEqual(fallback);
    expect(lanes?.laneOf([{ eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:ingest-fanout-prod-lane-crm' }])).toBe(
      'crm',
    );
  });
});

describe('laneOf', () => {
  const of = laneOf('https://sqs.us-east-1.amazonaws.com/123456789012/ingest-fanout-prod-lane-');
  const arn = (name: string) => [{ eventSourceARN: `arn:aws:sqs:us-east-1:123456789012:${name}` }];

  it('names the endpoint of a lane batch and nothing for a source batch', () => {
    expect(of(arn('ingest-fanout-prod-lane-audit'))).toBe('audit');
    expect(of(arn('ingest-fanout-prod'))).toBeUndefined();
    expect(of(arn('ingest-fanout-prod-lane-'))).toBeUndefined();
    expect(of(arn('other-ingest-fanout-prod-lane-audit'))).toBeUndefined();
    expect(of([])).toBeUndefined();
  });
});
