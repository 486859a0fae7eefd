import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CLIENT_DEFAULTS,
  CredentialError,
  createCredentialSource,
  createSecretSource,
  parseCredentialSpec,
  type SecretRef,
  secretKey,
} from '../../../lib/credentials/credentials';
import { authHeaders } from '../../../lib/delivery/endpoint';

const ENDPOINTS = ['analytics', 'audit', 'crm'];
const AUDIT_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:ingest/prod/audit-key-AbCdEf';

/** A loopback server speaking the AWS JSON protocol for SSM GetParameter and Secrets Manager GetSecretValue. */
interface FakeStores {
  parameters: Map<string, string>;
  secrets: Map<string, string | Uint8Array>;
  denied: Set<string>;
  calls: { target: string; body: Record<string, unknown> }[];
}

const stores: FakeStores = { parameters: new Map(), secrets: new Map(), denied: new Set(), calls: [] };
let server: Server;
let endpoint: string;

function reply(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
  res.end(JSON.stringify(body));
}

async function handle(req: IncomingMessage, res: ServerResponse) {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
  const target = String(req.headers['x-amz-target']);
  stores.calls.push({ target, body });
  if (target === 'AmazonSSM.GetParameter') {
    const name = String(body.Name);
    if (stores.denied.has(name)) return reply(res, 400, { __type: 'AccessDeniedException', message: 'not authorized' });
    const value = stores.parameters.get(name);
    if (value === undefined) return reply(res, 400, { __type: 'ParameterNotFound', message: '' });
    return reply(res, 200, { Parameter: { Name: name, Type: 'SecureString', Value: value, Version: 1 } });
  }
  if (target === 'secretsmanager.GetSecretValue') {
    const id = String(body.SecretId);
    const value = stores.secrets.get(id);
    if (value === undefined) {
      return reply(res, 400, {
        __type: 'ResourceNotFoundException',
        Message: "Secrets Manager can't find the specified secret.",
      });
    }
    const payload =
      typeof value === 'string' ? { SecretString: value } : { SecretBinary: Buffer.from(value).toString('base64') };
    return reply(res, 200, { ARN: AUDIT_ARN, Name: id, VersionId: 'v1', ...payload });
  }
  reply(res, 400, { __type: 'UnknownOperationException', message: target });
}

const clientConfig = () => ({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  maxAttempts: 1,
});
const clients = () => ({
  ssmClient: new SSMClient(clientConfig()),
  secretsClient: new SecretsManagerClient(clientConfig()),
});

beforeAll(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => reply(res, 500, { __type: 'InternalError', message: String(error) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  stores.parameters = new Map([['/ingest/prod/analytics-token', 'tok-analytics-1\n']]);
  stores.secrets = new Map<string, string | Uint8Array>([['ingest/prod/audit-key', 'audit-hmac-secret']]);
  stores.denied = new Set();
  stores.calls = [];
});

const SPEC = 'analytics=bearer:ssm:/ingest/prod/analytics-token,audit=hmac:secretsmanager:ingest/prod/audit-key';

describe('createCredentialSource', () => {
  it('reads each credential from its store, decrypting SSM SecureStrings, and builds the auth headers', async () => {
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients());
    const credentials = await source();

    expect([...credentials.keys()].sort()).toEqual(['analytics', 'audit']);
    expect(credentials.get('analytics')).toMatchObject({ kind: 'bearer', token: 'tok-analytics-1' });
    expect(credentials.get('audit')).toMatchObject({ kind: 'hmac', secret: 'audit-hmac-secret' });
    expect(credentials.has('crm')).toBe(false);
    expect(authHeaders(credentials.get('analytics'), Buffer.from('{}'))).toEqual({
      authorization: 'Bearer tok-analytics-1',
    });
    const ssmCall = stores.calls.find((call) => call.target === 'AmazonSSM.GetParameter');
    expect(ssmCall?.body).toMatchObject({ Name: '/ingest/prod/analytics-token', WithDecryption: true });
    expect(stores.calls.find((call) => call.target === 'secretsmanager.GetSecretValue')?.body).toMatchObject({
      SecretId: 'ingest/prod/audit-key',
    });
  });

  it('reuses fetched credentials within their max age instead of calling the stores again', async () => {
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), { ...clients(), maxAgeS: 300 });
    await source();
    stores.parameters.set('/ingest/prod/analytics-token', 'tok-analytics-2');
    const again = await source();

    expect(stores.calls).toHaveLength(2);
    expect(again.get('analytics')).toMatchObject({ token: 'tok-analytics-1' });
  });

  it('picks up a rotated credential once its max age has passed', async () => {
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), { ...clients(), maxAgeS: 0 });
    await source();
    stores.parameters.set('/ingest/prod/analytics-token', 'tok-analytics-2');
    const rotated = await source();

    expect(stores.calls).toHaveLength(4);
    expect(rotated.get('analytics')).toMatchObject({ token: 'tok-analytics-2' });
  });

  it('refresh reads one endpoint again bypassing the cache, and the cache then holds the new value (defect 4)', async () => {
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), { ...clients(), maxAgeS: 300 });
    await source();
    stores.parameters.set('/ingest/prod/analytics-token', 'tok-analytics-2');
    expect(await source.refresh('analytics')).toMatchObject({ kind: 'bearer', token: 'tok-analytics-2' });
    expect(await source.refresh('crm')).toBeUndefined();
    expect(stores.calls).toHaveLength(3);
    expect((await source()).get('analytics')).toMatchObject({ token: 'tok-analytics-2' });
    expect(stores.calls).toHaveLength(3);
  });

  it('fails with a CredentialError naming the endpoint and the missing SSM parameter', async () => {
    stores.parameters.clear();
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients());

    const error = await source().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialError);
    expect((error as CredentialError).ref.endpoint).toBe('analytics');
    expect((error as Error).message).toBe(
      "ENDPOINT_CREDENTIALS: cannot read the bearer token of endpoint 'analytics' (SSM parameter " +
        "'/ingest/prod/analytics-token'): ParameterNotFound: create it as a SecureString parameter in this account " +
        'and region, or fix ENDPOINT_CREDENTIALS',
    );
  });

  it('fails with a CredentialError naming the missing secret, and never shows credential values', async () => {
    stores.secrets.clear();
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients());

    const error = (await source().catch((e: unknown) => e)) as CredentialError;
    expect(error).toBeInstanceOf(CredentialError);
    expect(error.message).toContain("HMAC secret of endpoint 'audit' (Secrets Manager secret 'ingest/prod/audit-key')");
    expect(error.message).toContain('ResourceNotFoundException: create the secret');
    expect(inspect(error, { depth: 5 })).not.toContain('tok-analytics-1');
  });

  it('says the role is missing the permission when the store denies access', async () => {
    stores.denied.add('/ingest/prod/analytics-token');
    const source = createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients());

    await expect(source()).rejects.toThrow(/AccessDeniedException: the function role may not read it: redeploy/);
  });

  it('rejects an empty or binary credential', async () => {
    stores.parameters.set('/ingest/prod/analytics-token', '  ');
    await expect(createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients())()).rejects.toThrow(
      "ENDPOINT_CREDENTIALS: the bearer token of endpoint 'analytics' (SSM parameter '/ingest/prod/analytics-token') is empty",
    );

    stores.parameters.set('/ingest/prod/analytics-token', 'tok');
    stores.secrets.set('ingest/prod/audit-key', new Uint8Array([1, 2, 3]));
    await expect(createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients())()).rejects.toThrow(
      /audit.*it is binary: store the credential as a string/,
    );
  });

  it('keeps credential values out of JSON and inspect output, as the logger would print them', async () => {
    const credentials = await createCredentialSource(parseCredentialSpec(SPEC, ENDPOINTS), clients())();
    const printed = [
      JSON.stringify(Object.fromEntries(credentials)),
      JSON.stringify(credentials.get('analytics')),
      inspect(credentials, { depth: 5 }),
    ].join('\n');

    expect(printed).toContain('bearer');
    expect(printed).not.toContain('tok-analytics-1');
    expect(printed).not.toContain('audit-hmac-secret');
  });

  it('makes no call when no endpoint has credentials', async () => {
    const credentials = await createCredentialSource(parseCredentialSpec('', ENDPOINTS), clients())();
    expect(credentials.size).toBe(0);
    expect(stores.calls).toHaveLength(0);
  });
});

describe('createSecretSource (the endpoints file secret references)', () => {
  const refs: SecretRef[] = [
    { endpoint: 'audit', field: 'signing.secrets[0]', store: 'ssm', name: '/ingest/prod/analytics-token' },
    { endpoint: 'crm', field: 'auth.clientSecret', store: 'secretsmanager', name: 'ingest/prod/audit-key' },
    // The same parameter referenced twice is read once.
    { endpoint: 'search', field: 'auth.token', store: 'ssm', name: '/ingest/prod/analytics-token' },
  ];

  it('resolves every reference by store and name, reading each once', async () => {
    const values = await createSecretSource(refs, clients())();
    expect(values.get(secretKey(refs[0]!))).toBe('tok-analytics-1');
    expect(values.get(secretKey(refs[1]!))).toBe('audit-hmac-secret');
    expect(stores.calls).toHaveLength(2);
  });

  it('names the endpoint, the field and the store in its error, and the endpoints file as the place to fix', async () => {
    stores.secrets.clear();
    const error = await createSecretSource(refs, clients())().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialError);
    expect((error as Error).message).toBe(
      "endpoints file: cannot read the auth.clientSecret of endpoint 'crm' (Secrets Manager secret " +
        "'ingest/prod/audit-key'): ResourceNotFoundException: create the secret (a SecretString) in this account " +
        'and region, or fix endpoints file',
    );
  });
});

describe('the stores’ clients', () => {
  it('a store that accepts the request and never answers fails at the request timeout instead of hanging', async () => {
    const server = createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The defaults the sources use, with one attempt and a short timeout so the test need not wait 9 s.
    const ssm = new SSMClient({
      ...CLIENT_DEFAULTS,
      endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
      requestHandler: { ...CLIENT_DEFAULTS.requestHandler, requestTimeout: 300 },
    });
    try {
      await expect(ssm.send(new GetParameterCommand({ Name: '/never' }))).rejects.toMatchObject({
        name: 'TimeoutError',
      });
    } finally {
      ssm.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 10_000);
});
