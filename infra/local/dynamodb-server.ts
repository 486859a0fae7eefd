import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DUMMY_CREDENTIALS, LOCAL_REGION } from './sqs-server';

type DynaliteFactory = (options: { createTableMs?: number; deleteTableMs?: number; updateTableMs?: number }) => Server;
// dynalite ships no type declarations; this is the one function used.
const dynalite = createRequire(import.meta.url)('dynalite') as DynaliteFactory;

export const LOCAL_LEDGER_TABLE = 'ingest-fanout-local-ledger';

export interface LocalLedger {
  /** Base URL for AWS_ENDPOINT_URL_DYNAMODB. */
  endpoint: string;
  table: string;
  close(): Promise<void>;
}

/** Starts dynalite on 127.0.0.1 with the delivery ledger table (string partition key `id`, as infra/ledger.yml). */
export async function startLocalLedger(table = LOCAL_LEDGER_TABLE): Promise<LocalLedger> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: DUMMY_CREDENTIALS });
  try {
    await client.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      }),
    );
  } finally {
    client.destroy();
  }
  return {
    endpoint,
    table,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
