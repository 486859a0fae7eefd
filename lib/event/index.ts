export {
  type CloudEvent,
  CloudEventSchema,
  CONTEXT_ATTRIBUTES,
  eventIdOf,
  type InvalidEvent,
  idempotencyKey,
  parseEvent,
  type ValidEvent,
} from './event';
export { rawMember } from './raw-json';
