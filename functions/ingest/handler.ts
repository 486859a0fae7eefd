import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
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
  parseCredentialSpec,
} from '../../lib/index';

// Everything below runs once at cold start: a bad value or a missing secret stops the function here, and no batch is
// acknowledged.
const config = loadConfig(process.env);
const credentialSpec = parseCredentialSpec(
  process.env.ENDPOINT_CREDENTIALS,
  config.endpoints.map((endpoint) => endpoint.name),
);
const { logger, metrics, tracer } = createObservability();
const edges = createEdges(config, {
  sqs: tracer.captureAWSv3Client(new SQSClient({})),
  ...(config.ledgerTable ? { dynamodb: tracer.captureAWSv3Client(new DynamoDBClient({})) } : {}),
});
const credentials = credentialSpec.length > 0 ? createCredentialSource(credentialSpec) : undefined;
await credentials?.();
const ingest = createIngest(config, { logger, metrics, tracer, ...edges, ...(credentials ? { credentials } : {}) });

export const handler = middy<SQSEvent, SQSBatchResponse>()
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .handler((event, context) => ingest.handle(event, context));
