import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createSqsServer } from 'local-aws-sqs';
// Brings 'vitest' into this file so the ProvidedContext augmentation below resolves.
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  interface ProvidedContext {
    /** Base URL of the suite's local-aws-sqs server, e.g. http://127.0.0.1:40123 */
    sqsEndpoint: string;
    /** Base URL of the suite's dynalite server. */
    dynamodbEndpoint: string;
  }
}

type DynaliteFactory = (options: { createTableMs?: number; deleteTableMs?: number; updateTableMs?: number }) => Server;
// dynalite ships no type declarations; this is the one function we use.
const dynalite = createRequire(import.meta.url)('dynalite') as DynaliteFactory;

function baseUrl(server: Server): string {
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}

/** Starts local-aws-sqs and dynalite on loopback; `close` stops both. Also used by `npm run fuzz`, outside vitest. */
export async function startLocalServers(): Promise<{
  sqsEndpoint: string;
  dynamodbEndpoint: string;
  close: () => Promise<void>;
}> {
  // Queues are uniquely named per test, so a deleted name is never reused: skip the 60 s re-creation guard.
  const sqs = await createSqsServer({ port: 0, hostname: '127.0.0.1', emulateQueueCreationLifecycle: false });
  const dynamodb = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    dynamodb.once('error', reject);
    dynamodb.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    sqsEndpoint: baseUrl(sqs),
    dynamodbEndpoint: baseUrl(dynamodb),
    close: async () => {
      await Promise.all([close(sqs), close(dynamodb)]);
    },
  };
}

/** Starts local-aws-sqs and dynalite once for the whole suite; tests reach them with inject(). */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const servers = await startLocalServers();
  project.provide('sqsEndpoint', servers.sqsEndpoint);
  project.provide('dynamodbEndpoint', servers.dynamodbEndpoint);
  return servers.close;
}
