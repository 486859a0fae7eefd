import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
// Straight from the modules, not lib/index: what only some configurations need (the ledger's DynamoDB client, the
// credentials' SSM and Secrets Manager clients, the tracer) loads on demand, which shortens the cold start (bench table 4).
import { loadConfig } from '../../lib/config/config';
import { parseCredentialSpec } from '../../lib/credentials/credential-spec';
import { createEdges } from '../../lib/ingest/edges';
import { createIngest } from '../../lib/ingest/ingest';
import { createObservability, loadTracer, publishStoredMetrics } from '../../lib/observability/observability';
import {
  checkCredentialOverlap,
  checkSigningSecrets,
  endpointsDocument,
  secretRefs,
} from '../../lib/subscription/source';

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
const refs = secretRefs(config.endpoints);
const credentialModule =
  credentialSpec.length > 0 || refs.length > 0 ? await import('../../lib/credentials/credentials') : undefined;
const { logger, metrics } = createObservability();
const tracer = await loadTracer();
const traced = <T>(client: T): T => (tracer ? tracer.captureAWSv3Client(client) : client);
const dynamodb = config.ledgerTable
  ? traced(new (await import('@aws-sdk/client-dynamodb')).DynamoDBClient({}))
  : undefined;
const edges = await createEdges(config, { sqs: traced(new SQSClient({})), ...(dynamodb ? { dynamodb } : {}) });
const credentials =
  credentialModule && credentialSpec.length > 0 ? credentialModule.createCredentialSource(credentialSpec) : undefined;
const secrets = credentialModule && refs.length > 0 ? credentialModule.createSecretSource(refs) : undefined;
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
  .use(publishStoredMetrics(metrics))
  .handler((event, context) => ingest.handle(event, context));
