import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { expect, it, onTestFinished } from 'vitest';
import { DUMMY_CREDENTIALS, LOCAL_REGION, SQS_REQUEST_HANDLER } from '../../infra/local/sqs-server';

// The local tools' SQS clients (send, dlq, redrive, the local stack) against a server that never answers.
it('a request nobody answers fails at the request timeout instead of hanging the tool', async () => {
  // Accepts the connection and the request, never answers.
  const server = http.createServer(() => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The tools' handler settings, with a short timeout so the test need not wait 25 s.
  const sqs = new SQSClient({
    endpoint,
    region: LOCAL_REGION,
    credentials: DUMMY_CREDENTIALS,
    maxAttempts: 1,
    requestHandler: { ...SQS_REQUEST_HANDLER, requestTimeout: 300 },
  });
  onTestFinished(() => sqs.destroy());
  const command = new GetQueueAttributesCommand({ QueueUrl: `${endpoint}/123456789012/q`, AttributeNames: ['All'] });
  await expect(sqs.send(command)).rejects.toMatchObject({ name: 'TimeoutError' });
}, 10_000);
