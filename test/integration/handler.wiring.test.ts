import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { TestEndpoint } from '../support/endpoints';
import { eventRecord, lambdaContext, sqsEvent } from '../support/events';

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

const saved = { ...process.env };
let alpha: TestEndpoint;
let beta: TestEndpoint;

beforeAll(async () => {
  [alpha, beta] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
});
afterAll(async () => {
  process.env = saved;
  await Promise.all([alpha.close(), beta.close()]);
});
beforeEach(() => {
  alpha.reset();
  beta.reset();
  vi.resetModules();
  process.env = { ...saved };
});

async function loadHandler(env: Record<string, string>): Promise<Handler> {
  Object.assign(process.env, env);
  const module = (await import('../../functions/ingest/handler')) as { handler: Handler };
  return module.handler;
}

/** Listens on 127.0.0.1 for this test file; closes every connection at the end. */
async function listen(server: ReturnType<typeof createServer> | https.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

async function close(server: ReturnType<typeof createServer> | https.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A loopback SSM and Secrets Manager speaking the AWS JSON protocol, holding one parameter and one secret. */
function secretStores(parameter: string, secret: string) {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, string>;
      const target = String(req.headers['x-amz-target']);
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      if (target === 'AmazonSSM.GetParameter') {
        res.end(JSON.stringify({ Parameter: { Name: body.Name, Type: 'SecureString', Value: parameter, Version: 1 } }));
      } else if (target === 'secretsmanager.GetSecretValue') {
        res.end(JSON.stringify({ Name: body.SecretId, VersionId: 'v1', SecretString: secret }));
      } else {
        res.writeHead(400);
        res.end(JSON.stringify({ __type: 'UnknownOperationException', message: target }));
      }
    });
  });
}

describe('functions/ingest/handler wiring', () => {
  it('sends the credentials it read from SSM and Secrets Manager with every request', async () => {
    const stores = secretStores('tok-from-ssm', 'hmac-from-secrets-manager');
    const port = await listen(stores);
    try {
      const handler = await loadHandler({
        ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
        ENDPOINT_CREDENTIALS: 'alpha=bearer:ssm:/ingest/alpha-token,beta=hmac:secretsmanager:ingest/beta-key',
        AWS_ENDPOINT_URL_SSM: `http://127.0.0.1:${port}`,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://127.0.0.1:${port}`,
      });
      const response = await handler(sqsEvent([eventRecord('signed')]), lambdaContext());

      expect(response.batchItemFailures).toEqual([]);
      expect(alpha.received.map((request) => request.headers.authorization)).toEqual(['Bearer tok-from-ssm']);
      const [signed] = beta.received;
      const expected = createHmac('sha256', 'hmac-from-secrets-manager').update(signed!.body).digest('hex');
      expect(signed!.headers['x-signature-256']).toBe(`sha256=${expected}`);
    } finally {
      await close(stores);
    }
  });

  it('delivers to an https endpoint over TLS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ingest-tls-'));
    // A self-signed certificate for 127.0.0.1, like the benchmark's (test/bench/tls.ts).
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
        ...['-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1'],
        ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      ],
      { stdio: 'ignore' },
    );
    const bodies: string[] = [];
    const server = https.createServer(
      { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          bodies.push(Buffer.concat(chunks).toString('utf8'));
          res.writeHead(202);
          res.end();
        });
      },
    );
    const port = await listen(server);
    try {
      // The certificate is self-signed and Node reads NODE_EXTRA_CA_CERTS only at start-up: skip verification here.
      const handler = await loadHandler({
        ENDPOINTS: `secure=https://127.0.0.1:${port}/events`,
        NODE_TLS_REJECT_UNAUTHORIZED: '0',
      });
      const response = await handler(sqsEvent([eventRecord('over-tls')]), lambdaContext());

      expect(response.batchItemFailures).toEqual([]);
      expect(bodies.map((body) => (JSON.parse(body) as { id: string }).id)).toEqual(['over-tls']);
    } finally {
      await close(server);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
