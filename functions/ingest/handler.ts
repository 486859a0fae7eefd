import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import {
  checkCredentialOverlap,
  checkSigningSecrets,
  createCredentialSource,
  createEdges,
  createIngest,
  createObservability,
  createSecretSource,
  endpointsDocument,
  loadConfig,
  loadTracer,
  parseCredentialSpec,
  secretRefs,
} from '../../lib/index';

// The stage's endpoints file as JSON text, put in the bundle by esbuild's `define` at `npm run package`: no network
// call and no 4 KB environment limit. Absent outside a packaged artifact.
declare const __INGEST_ENDPOINTS__: string | undefined;

// Everything below runs once at cold start: a bad value or a missing secret stops the function here, and no batch is
// acknowledged.
const config = loadConfig(
  process.env,
  endpointsDocument(process.env, typeof __INGEST_ENDPOINTS__ === 'string' ? __INGEST_ENDPOINTS__ : undefined),
);
const credentialSpec = parseCredentialSpec(
  process.env.ENDPOINT_CREDENTIALS,
  config.endpoints.map((endpoint) => endpoint.name),
);
checkCredentialOverlap(credentialSpec, config.endpoints);
const { logger, metrics } = createObservability();
const tracer = await loadTracer();
const traced = <T>(client: T): T => (tracer ? tracer.captureAWSv3Client(client) : client);
const edges = createEdges(config, {
  sqs: traced(new SQSClient({})),
  ...(config.ledgerTable ? { dynamodb: traced(new DynamoDBClient({})) } : {}),
});
const credentials = credentialSpec.length > 0 ? createCredentialSource(credentialSpec) : undefined;
const refs = secretRefs(config.endpoints);
const secrets = refs.length > 0 ? createSecretSource(refs) : undefined;
const [, secretValues] = await Promise.all([credentials?.(), secrets?.()]);
if (secretValues) checkSigningSecrets(config.endpoints, secretValues);
const ingest = createIngest(config, {
  logger,
  metrics,
  ...(tracer ? { tracer } : {}),
  ...edges,
  ...(credentials ? { credentials, refreshCredential: credentials.refresh } : {}),
  ...(secrets ? { secrets, refreshSecrets: secrets.refresh } : {}),
});

const base = middy<SQSEvent, SQSBatchResponse>();
if (tracer) {
  const { captureLambdaHandler } = await import('@aws-lambda-powertools/tracer/middleware');
  base.use(captureLambdaHandler(tracer, { captureResponse: false }));
}
export const handler = base
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .handler((event, context) => ingest.handle(event, context));
