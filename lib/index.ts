export { type Config, type EndpointConfig, isLoopbackHost, loadConfig } from './config/config';
export { QueueAddressError } from './config/queue-url';
export {
  CredentialError,
  createCredentialSource,
  createSecretSource,
  parseCredentialSpec,
} from './credentials/credentials';
export { type Credential, HTTP_4XX } from './delivery';
export { ConfigError, DeliveryAttemptError } from './errors';
export { CloudEventSchema, idempotencyKey, parseEvent } from './event';
export { createEdges, type Edges } from './ingest/edges';
export { createIngest, type Ingest, type IngestDeps } from './ingest/ingest';
export {
  createObservability,
  loadTracer,
  METRICS_NAMESPACE,
  MetricName,
  SERVICE_NAME,
  tracingWanted,
} from './observability/observability';
export { BackoffError } from './settle/backoff';
export { LedgerError } from './settle/ledger';
export { QuarantineError } from './settle/quarantine';
export { type EndpointConfig as Subscription, parseEndpointsDocument } from './subscription/schema';
export {
  checkCredentialOverlap,
  checkSigningSecrets,
  endpointsDocument,
  secretRefs,
} from './subscription/source';
export type * from './types';
