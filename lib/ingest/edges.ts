import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Config } from '../config/config';
import { createLaneSender, createPauseReader, type LaneSender, type PauseReader, sqsLaneTags } from '../lanes';
import { createBackoff } from '../settle/backoff';
import { createQuarantine } from '../settle/quarantine';
import type { Backoff, Ledger, Quarantine } from '../types';

export interface EdgeClients {
  sqs?: SQSClient;
  dynamodb?: DynamoDBClient;
}

export interface Edges {
  quarantine?: Quarantine;
  backoff?: Backoff;
  ledger?: Ledger;
  /** Sends events to the endpoints' lanes (issue 16); only with LANE_QUEUE_URL_PREFIX. */
  lanes?: LaneSender;
  /** Which endpoints are paused, from their lanes' `ingest:paused` tag; only with LANE_QUEUE_URL_PREFIX. */
  paused?: PauseReader;
}

/**
 * The SQS and DynamoDB side effects the configuration asks for: quarantine when QUARANTINE_QUEUE_URL is set,
 * backoff always, the ledger when DELIVERY_LEDGER_TABLE is set. Clients default to the SDK's own resolution
 * (region, credentials, AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_DYNAMODB); a client is only created when needed.
 * The DynamoDB client and the ledger load only when configured: evaluating the client costs cold start (bench table 4).
 */
export async function createEdges(config: Config, clients: EdgeClients = {}): Promise<Edges> {
  const sqs = clients.sqs ?? new SQSClient({});
  const edges: Edges = {
    backoff: createBackoff(sqs, { baseDelayS: config.retryBaseDelayS, maxDelayS: config.retryMaxDelayS }),
  };
  if (config.quarantineQueueUrl) edges.quarantine = createQuarantine(sqs, config.quarantineQueueUrl);
  if (config.laneQueueUrlPrefix) {
    edges.lanes = createLaneSender(sqs, config.laneQueueUrlPrefix);
    edges.paused = createPauseReader(sqsLaneTags(sqs, config.laneQueueUrlPrefix));
  }
  if (config.ledgerTable) {
    const { createLedger } = await import('../settle/ledger');
    const dynamodb = clients.dynamodb ?? new (await import('@aws-sdk/client-dynamodb')).DynamoDBClient({});
    edges.ledger = createLedger(dynamodb, {
      table: config.ledgerTable,
      endpoints: config.endpoints.map((endpoint) => endpoint.name),
      ttlS: config.ledgerTtlS,
    });
  }
  return edges;
}
