import { ListQueueTagsCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { lastGood, type Read } from '../credentials/last-good';
import { laneQueueUrl } from './park';

/** The tag that pauses an endpoint: set on its lane queue by `npm run endpoint -- pause`, its value the ISO time. */
export const PAUSED_TAG = 'ingest:paused';
/** Who paused it (the CLI's caller), for the console and `status`; informational only. */
export const PAUSED_BY_TAG = 'ingest:paused-by';

/** How long one instance trusts a lane's tags: a pause or resume reaches every instance within this. */
export const PAUSE_CACHE_MS = 30_000;
/** With a value known, a slower read gives way to it after this (the read goes on for the next invocation). */
const STALE_AFTER_MS = 1_000;
/** A cold start's first read waits at most this: unknown counts as not paused, as before pausing existed. */
const FIRST_READ_MS = 2_000;
/** A hung ListQueueTags call ends by itself, so the next read after the cache age can start. */
const CALL_TIMEOUT_MS = 10_000;

/** Whether one lane carries the pause tag; rejects when its tags cannot be read. */
export type LaneTagRead = (endpoint: string) => Promise<boolean>;

/** This invocation's view: the paused endpoints (fresh, or the last good read) and the lanes whose read failed. */
export interface PauseRead {
  paused: ReadonlySet<string>;
  errors: { endpoint: string; error: unknown }[];
}

/** Which of `endpoints` are paused, within `signal`; `fresh`: not from the cache. Never rejects. */
export type PauseReader = (
  endpoints: readonly string[],
  signal: AbortSignal,
  options?: { fresh?: boolean },
) => Promise<PauseRead>;

/** ListQueueTags of `prefix + endpoint`: paused while the tag is there. */
export function sqsLaneTags(sqs: SQSClient, prefix: string): LaneTagRead {
  return async (endpoint) => {
    const { Tags } = await sqs.send(new ListQueueTagsCommand({ QueueUrl: laneQueueUrl(prefix, endpoint) }), {
      abortSignal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
    return Tags?.[PAUSED_TAG] !== undefined;
  };
}

/** A cached read, and a way to make its next call read again. */
interface Cached {
  read: () => Promise<boolean>;
  expire: () => void;
}

/**
 * One read at a time, its answer kept `cacheMs`; a failure too (the caller falls back on the last good answer), so a
 * missing lane or a denied call costs one call per cache age, not one per batch.
 */
function cached(read: () => Promise<boolean>, cacheMs: number, now: () => number): Cached {
  let fresh: { at: number; ok: true; value: boolean } | { at: number; ok: false; error: unknown } | undefined;
  let pending: Promise<boolean> | undefined;
  const expire = () => {
    fresh = undefined;
  };
  const call = () => {
    if (fresh && now() - fresh.at < cacheMs)
      return fresh.ok ? Promise.resolve(fresh.value) : Promise.reject(fresh.error);
    pending ??= read()
      .then(
        (value) => {
          fresh = { at: now(), ok: true, value };
          return value;
        },
        (error: unknown) => {
          fresh = { at: now(), ok: false, error };
          throw error;
        },
      )
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
  return { read: call, expire };
}

export interface PauseReaderOptions {
  cacheMs?: number;
  staleAfterMs?: number;
  firstReadMs?: number;
  now?: () => number;
}

/**
 * Reads each lane's pause tag per instance, cached `cacheMs`, bounded by the invocation's signal; a lane whose read
 * fails or is late keeps its last good answer (none yet: not paused), so a batch never fails because of it.
 */
export function createPauseReader(readTag: LaneTagRead, options: PauseReaderOptions = {}): PauseReader {
  const { cacheMs = PAUSE_CACHE_MS, staleAfterMs = STALE_AFTER_MS, firstReadMs = FIRST_READ_MS } = options;
  const now = options.now ?? Date.now;
  const lanes = new Map<string, { read: (signal: AbortSignal) => Promise<Read<boolean>>; expire: () => void }>();
  const laneRead = (endpoint: string) => {
    let lane = lanes.get(endpoint);
    if (!lane) {
      const cache = cached(() => readTag(endpoint), cacheMs, now);
      lane = { read: lastGood(cache.read, staleAfterMs), expire: cache.expire };
      lanes.set(endpoint, lane);
    }
    return lane;
  };
  return async (endpoints, signal, { fresh = false } = {}) => {
    // The first read has nothing to fall back on: it waits a little, not the whole invocation.
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(firstReadMs)]);
    const reads = await Promise.all(
      endpoints.map((endpoint) => {
        const lane = laneRead(endpoint);
        if (fresh) lane.expire();
        return lane.read(bounded);
      }),
    );
    const paused = new Set<string>();
    const errors: PauseRead['errors'] = [];
    reads.forEach((read, index) => {
      const endpoint = endpoints[index]!;
      if (read.value) paused.add(endpoint);
      if (read.error !== undefined) errors.push({ endpoint, error: read.error });
    });
    return { paused, errors };
  };
}
