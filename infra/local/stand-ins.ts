import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Values of the secret references, by store and name, as a local run's secrets file gives them. */
export interface SecretValues {
  ssm: Record<string, string>;
  secretsmanager: Record<string, string>;
}

export interface StandIn {
  url: string;
  close(): Promise<void>;
}

async function listen(server: http.Server, path = ''): Promise<StandIn> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

function reply(res: http.ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
  res.end(JSON.stringify(body));
}

/**
 * SSM GetParameter and Secrets Manager GetSecretValue on loopback (the AWS JSON protocol), serving `values`: the
 * handler reads the endpoints file's secret references from here through AWS_ENDPOINT_URL_SSM and
 * AWS_ENDPOINT_URL_SECRETS_MANAGER, exactly as it would in AWS.
 */
export function startSecretStores(values: SecretValues): Promise<StandIn> {
  const server = http.createServer((req, res) => {
    readJson(req).then(
      (body) => {
        const target = String(req.headers['x-amz-target']);
        if (target === 'AmazonSSM.GetParameter') {
          const name = String(body.Name);
          const value = values.ssm[name];
          if (value === undefined) return reply(res, 400, { __type: 'ParameterNotFound', message: name });
          return reply(res, 200, { Parameter: { Name: name, Type: 'SecureString', Value: value, Version: 1 } });
        }
        if (target === 'secretsmanager.GetSecretValue') {
          const id = String(body.SecretId);
          const value = values.secretsmanager[id];
          if (value === undefined) return reply(res, 400, { __type: 'ResourceNotFoundException', Message: id });
          return reply(res, 200, {
            ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${id}`,
            Name: id,
            SecretString: value,
          });
        }
        return reply(res, 400, { __type: 'UnknownOperationException', message: target });
      },
      () => reply(res, 400, { __type: 'SerializationException', message: 'not JSON' }),
    );
  });
  return listen(server);
}

/**
 * An OAuth 2.0 token endpoint for client credentials on loopback: any client id and secret get a one-hour token.
 * A stand-in for a stage's real token URL, so a local run can exercise the OAuth flow end to end.
 */
export function startTokenServer(): Promise<StandIn> {
  const server = http.createServer((req, res) => {
    let form = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      form += chunk;
    });
    req.on('end', () => {
      // client_secret_basic or, with clientAuth: post, client_secret_post (RFC 6749 section 2.3.1).
      const client = /^Basic /.test(req.headers.authorization ?? '') || new URLSearchParams(form).has('client_secret');
      res.writeHead(client ? 200 : 401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          client
            ? { access_token: randomBytes(16).toString('hex'), token_type: 'Bearer', expires_in: 3600 }
            : { error: 'invalid_client' },
        ),
      );
    });
  });
  return listen(server, '/oauth2/token');
}

/** A value for a reference the secrets file does not give: a Standard Webhooks secret for signing, else random. */
export function generatedSecret(field: string): string {
  return field.startsWith('signing.secrets')
    ? `whsec_${randomBytes(24).toString('base64')}`
    : randomBytes(16).toString('hex');
}
