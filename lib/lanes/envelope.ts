import type { SQSRecord } from 'aws-lambda';
import * as z from 'zod/mini';

/** The message attribute a lane message carries: what delivering it later needs besides the body. */
export const LANE_ATTRIBUTE = 'ingest.lane';

/**
 * SQS message timers stop at 15 minutes: a longer wait is several hops through the lane. Here, with no SQS client, so
 * that packaging (infra/stage/lanes.ts) reads the same figure.
 */
export const MAX_DELAY_S = 900;

const millis = z.number().check(z.int(), z.gte(0));
const EnvelopeSchema = z.strictObject({
  /** The endpoint whose lane holds the event. */
  e: z.string().check(z.minLength(1)),
  /** The event's idempotency key (lib/event/event.ts). */
  k: z.string().check(z.minLength(1)),
  /** When the event first failed for the endpoint (ms since the epoch). */
  f: millis,
  /** Failed deliveries to the endpoint so far, the source path's included. */
  a: z.number().check(z.int(), z.gte(1)),
  /** When the next delivery is due (ms since the epoch). */
  d: millis,
});
export type LaneEnvelope = z.infer<typeof EnvelopeSchema>;

export type DecodedEnvelope = { ok: true; envelope: LaneEnvelope } | { ok: false; reason: string };

export function encodeEnvelope(envelope: LaneEnvelope): string {
  return JSON.stringify({ e: envelope.e, k: envelope.k, f: envelope.f, a: envelope.a, d: envelope.d });
}

/** The endpoint a record's envelope names, however the rest of it reads (a lane's copy sent to the source queue). */
export function laneEndpointOf(record: SQSRecord): string | undefined {
  const raw = record.messageAttributes?.[LANE_ATTRIBUTE]?.stringValue;
  if (raw === undefined) return undefined;
  try {
    const endpoint = (JSON.parse(raw) as { e?: unknown }).e;
    return typeof endpoint === 'string' ? endpoint : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a lane record's envelope; invalid when absent, malformed or for another endpoint than the lane's. */
export function decodeEnvelope(record: SQSRecord, laneEndpoint: string): DecodedEnvelope {
  const raw = record.messageAttributes?.[LANE_ATTRIBUTE]?.stringValue;
  if (raw === undefined) return { ok: false, reason: `no '${LANE_ATTRIBUTE}' message attribute` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { ok: false, reason: `'${LANE_ATTRIBUTE}' is not JSON` };
  }
  const result = EnvelopeSchema.safeParse(parsed);
  if (!result.success) {
    const fields = [...new Set(result.error.issues.map((issue) => issue.path.join('.') || '(root)'))].join(', ');
    return { ok: false, reason: `'${LANE_ATTRIBUTE}' has a bad or missing field: ${fields}` };
  }
  if (result.data.e !== laneEndpoint) {
    return {
      ok: false,
      reason: `'${LANE_ATTRIBUTE}' names endpoint '${result.data.e}', not this lane's '${laneEndpoint}'`,
    };
  }
  return { ok: true, envelope: result.data };
}
