import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import {
  createCredentialSource,
  createEdges,
  createIngest,
  createObservability,
  loadConfig,
  loadTracer,
  parseCredentialSpec,
} from '../../lib/index';

// Everything below runs once at cold start: a bad value or a missing secret stops the function here, and no batch is
// acknowledged.
const config = loadConfig(process.env);
const credentialSpec = parseCredentialSpec(
  process.env.ENDPOINT_CREDENTIALS,
  config.endpoints.map((endpoint) => endpoint.name),
);
const { logger, metrics } = createObservability();
const tracer = await loadTracer();
const traced = <T>(client: T): T => (tracer ? tracer.captureAWSv3Client(client) : client);
const edges = createEdges(config, {
  sqs: traced(new SQSClient({})),
  ...(config.ledgerTable ? { dynamodb: traced(new DynamoDBClient({})) } : {}),
});
const credentials = credentialSpec.length > 0 ? createCredentialSource(credentialSpec) : undefined;
await credentials?.();
const ingest = createIngest(config, {
  logger,
  metrics,
  ...(tracer ? { tracer } : {}),
  ...edges,
  ...(credentials ? { credentials, refreshCredential: credentials.refresh } : {}),
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
