import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { createIngest, createObservability, loadConfig } from '../../lib/index';

// Read once at cold start: a bad value stops the function here, and no batch is acknowledged.
const config = loadConfig(process.env);
const { logger, metrics, tracer } = createObservability();
const ingest = createIngest(config, { logger, metrics, tracer });

export const handler = middy<SQSEvent, SQSBatchResponse>()
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .handler((event, context) => ingest.handle(event, context));
