export { type Config, type EndpointConfig, isLoopbackHost, loadConfig } from './config';
export type { Credential } from './endpoint';
export { ConfigError, DeliveryAttemptError } from './errors';
export { CloudEventSchema, idempotencyKey, parseEvent } from './event';
export { createIngest, type Ingest, type IngestDeps } from './ingest';
export { createObservability, METRICS_NAMESPACE, MetricName, SERVICE_NAME } from './observability';
export type * from './types';
