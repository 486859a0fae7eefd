export { BackoffError } from './backoff';
export { type Config, type EndpointConfig, isLoopbackHost, loadConfig } from './config';
export { CredentialError, createCredentialSource, parseCredentialSpec } from './credentials';
export { createEdges, type Edges } from './edges';
export { type Credential, HTTP_4XX } from './endpoint';
export { ConfigError, DeliveryAttemptError } from './errors';
export { CloudEventSchema, idempotencyKey, parseEvent } from './event';
export { createIngest, type Ingest, type IngestDeps } from './ingest';
export { LedgerError } from './ledger';
export {
  createObservability,
  loadTracer,
  METRICS_NAMESPACE,
  MetricName,
  SERVICE_NAME,
  tracingWanted,
} from './observability';
export { QuarantineError } from './quarantine';
export { QueueAddressError } from './queue-url';
export type * from './types';
