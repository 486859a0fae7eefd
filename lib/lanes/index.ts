import type { Config } from '../config/config';
import type { LaneSender } from './park';

export { LANE_BODY_ATTRIBUTE, LaneMessageTooLargeError, SQS_MAX_MESSAGE_BYTES, unpackLaneBody } from './body';
export { decodeEnvelope, encodeEnvelope, LANE_ATTRIBUTE, type LaneEnvelope, MAX_DELAY_S } from './envelope';
export { createLaneSender, type LaneMessage, type LaneSender, laneQueueUrl } from './park';
export {
  createPauseReader,
  type LaneTagRead,
  PAUSE_CACHE_MS,
  PAUSED_BY_TAG,
  PAUSED_TAG,
  type PauseRead,
  type PauseReader,
  sqsLaneTags,
} from './pause';
export { type LaneServeDeps, PAUSED_REDELAY_S, serveLane } from './serve';
export { type ParkDeps, parkFailures } from './source';

/**
 * Which endpoint's lane a batch comes from: its queue name (the ARN's last part) is the prefix's queue name + the
 * endpoint; undefined for a source batch. An event source mapping reads one queue, so the first record decides.
 */
export function laneOf(prefixUrl: string): (records: readonly { eventSourceARN?: string }[]) => string | undefined {
  const prefixName = prefixUrl.slice(prefixUrl.lastIndexOf('/') + 1);
  return (records) => {
    const arn = records[0]?.eventSourceARN ?? '';
    const name = arn.slice(arn.lastIndexOf(':') + 1);
    return name.length > prefixName.length && name.startsWith(prefixName) ? name.slice(prefixName.length) : undefined;
  };
}

/** What the pipeline keeps for the lanes: how to send, how to tell a lane batch, each endpoint's schedule. */
export interface Lanes {
  send: LaneSender;
  laneOf: (records: readonly { eventSourceARN?: string }[]) => string | undefined;
  schedule: (endpoint: string) => readonly number[];
}

/** Lanes only with LANE_QUEUE_URL_PREFIX and a sender; otherwise undefined and nothing changes. */
export function createLanes(
  config: Pick<Config, 'laneQueueUrlPrefix' | 'endpoints' | 'laneRetrySchedule'>,
  send: LaneSender | undefined,
): Lanes | undefined {
  if (!config.laneQueueUrlPrefix || !send) return undefined;
  const fallback = config.laneRetrySchedule;
  const schedules = new Map(config.endpoints.map((e) => [e.name, e.retrySchedule ?? fallback]));
  return {
    send,
    laneOf: laneOf(config.laneQueueUrlPrefix),
    schedule: (endpoint) => schedules.get(endpoint) ?? fallback,
  };
}
