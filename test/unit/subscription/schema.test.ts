import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readEndpointsFile } from '../../../infra/endpoints-file';
import { loadConfig } from '../../../lib/config/config';
import { ConfigError } from '../../../lib/errors';
import { DEFAULT_RETRY_SCHEDULE, parseEndpointsDocument } from '../../../lib/subscription/schema';

const SOURCE = 'endpoints/prod.yml';
const base = { name: 'audit', url: 'https://audit.example.com/in' };

function rejection(endpoints: unknown[]): string {
  try {
    parseEndpointsDocument({ endpoints }, SOURCE);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(SOURCE);
    return (error as Error).message;
  }
  throw new Error('accepted');
}

describe('endpoints file schema', () => {
  it('accepts the example stage file and keeps every setting', () => {
    const { endpoints } = readEndpointsFile(new URL('../../../endpoints/example.yml', import.meta.url).pathname);
    expect(endpoints.map((e) => e.name)).toEqual(['orders', 'audit', 'crm']);
    expect(endpoints[0]).toMatchObject({ contentMode: 'binary', filter: { type: [{ prefix: 'com.example.order.' }] } });
    expect(endpoints[1]).toMatchObject({ signing: { scheme: 'standard-webhooks' } });
    expect(endpoints[1]?.contentMode).toBeUndefined();
    expect(endpoints[2]).toMatchObject({ auth: { kind: 'oauth2-client-credentials' }, rateLimitPerSecond: 20 });
    expect(endpoints[2]?.url).toEqual(new URL('https://api.crm.example.com/v2/events'));
  });

  it.each([
    [[{ ...base, url: 'http://10.0.0.7/in' }], "endpoint 'audit' (endpoints[0]): url: must use https"],
    [[{ ...base, contentMode: 'batch' }], "endpoint 'audit' (endpoints[0]): contentMode:"],
    [
      [base, { ...base, name: 'crm', signing: { scheme: 'standard-webhooks', secrets: [{ ssm: 'bad name' }] } }],
      "endpoint 'crm' (endpoints[1]): signing.secrets[0].ssm: is not an SSM parameter name",
    ],
    [[{ ...base, auth: { kind: 'apiKey', header: 'X-Key', value: 'plain-text' } }], 'auth.value'],
    [[{ ...base, auth: { kind: 'digest' } }], "endpoint 'audit' (endpoints[0]): auth.kind"],
    [[{ ...base, headers: { Authorization: 'x' } }], "headers.Authorization: 'Authorization' is set by the function"],
    [[{ ...base, headers: { 'ce-type': 'x' } }], 'is set by the function itself'],
    [
      [{ ...base, auth: { kind: 'apiKey', header: 'Content-Type', value: { ssm: '/k' } } }],
      "auth.header: 'Content-Type' is set by the function itself",
    ],
    [[{ ...base, filter: { type: { suffix: '.created' } } }], 'filter.type'],
    [[{ ...base, rateLimitPerSecond: 0 }], 'rateLimitPerSecond'],
    [[{ ...base, rateLimitPerSecond: 0.0001 }], 'rateLimitPerSecond: must be at least 0.001'],
    [[{ ...base, maxRatePerSecond: 100 }], 'maxRatePerSecond: a global budget needs rateLimitPerSecond'],
    [[{ ...base, timeoutMs: 1.5 }], 'timeoutMs'],
    [[base, base], "name: 'audit' appears twice"],
    [[{ ...base, extra: 1 }], "(endpoint): unknown field(s) 'extra'"],
    [[{ ...base, contentMode: 'batch' }], 'contentMode: must be "structured" or "binary"'],
    [
      [
        {
          ...base,
          auth: {
            kind: 'oauth2-client-credentials',
            tokenUrl: 'https://login.example.com/token',
            clientId: 'ingest',
            clientSecret: { ssm: '/c' },
            clientAuth: 'client_secret_jwt',
          },
        },
      ],
      'auth.clientAuth: must be "basic" or "post"',
    ],
    [[{ ...base, maxConnections: 0 }], 'maxConnections: must be at least 1'],
    [
      [{ ...base, filter: { extensions: { tenant: [7, 31] } } }],
      "endpoint 'audit' (endpoints[0]): filter.extensions.tenant: must be a non-empty string or a list of them, not 7: quote the value",
    ],
    [[{ ...base, filter: { extensions: { live: true } } }], 'filter.extensions.live: must be a non-empty string'],
    [
      [{ ...base, auth: { kind: 'basic', username: 'ops:eu', password: { ssm: '/p' } } }],
      "auth.username: must not contain ':' or control characters (RFC 7617)",
    ],
    [
      [{ ...base, filter: { extensions: { Tenant: 'x' } } }],
      'filter.extensions.Tenant: is not a CloudEvents extension name',
    ],
    ...['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema', 'data'].map(
      (name): [unknown[], string] => [
        [{ ...base, filter: { extensions: { [name]: 'x' } } }],
        `filter.extensions.${name}: '${name}' is a context attribute, not an extension`,
      ],
    ),
    [[{ ...base, headers: { 'X-Team': 'a\u0000b' } }], 'headers.X-Team: must be one line of printable characters'],
    [[{ ...base, headers: { 'X-Team': 'a\u007fb' } }], 'headers.X-Team: must be one line'],
    [[{ ...base, headers: { 'X-Team': 'caf\u00e9 \u20ac' } }], 'headers.X-Team: must be one line'],
    [[{ ...base, headers: { 'X-Team': 'a\r\nX-Evil: 1' } }], 'headers.X-Team: must be one line'],
    [[{ ...base, name: 'Audit' }], "endpoint 'Audit' (endpoints[0]): name: use lowercase letters, digits and dashes"],
    [[{ ...base, maxConnections: 1025 }], 'maxConnections: must be at most 1024'],
    [[{ ...base, timeoutMs: 0 }], 'timeoutMs: must be at least 1'],
    [[{ ...base, rateLimitPerSecond: 100_001 }], 'rateLimitPerSecond: must be at most 100000'],
    [
      [{ ...base, signing: { scheme: 'standard-webhooks', secrets: [] } }],
      'signing.secrets: must be at least 1 item(s)',
    ],
    [
      [{ ...base, signing: { scheme: 'standard-webhooks', secrets: Array(6).fill({ ssm: '/s' }) } }],
      'signing.secrets: must be at most 5 item(s)',
    ],
    [[{ ...base, filter: { type: [] } }], 'filter.type: must be at least 1 item(s)'],
    [[{ ...base, filter: { type: { prefix: '' } } }], 'filter.type.prefix: must be a non-empty string'],
    [
      [{ ...base, filter: { extensions: { tenant: [] } } }],
      'filter.extensions.tenant: must be a non-empty string or a list of them, not nothing',
    ],
    [
      [{ ...base, filter: { extensions: { tenant: '' } } }],
      'filter.extensions.tenant: must be a non-empty string or a list of them, not ""',
    ],
    [
      [{ ...base, auth: { kind: 'bearer', token: { secretsmanager: 'bad name!' } } }],
      'auth.token.secretsmanager: is not a Secrets Manager secret name',
    ],
    [
      [{ ...base, auth: { kind: 'basic', username: 'a\u0007b', password: { ssm: '/p' } } }],
      'auth.username: must not contain',
    ],
    [
      [{ ...base, auth: { kind: 'apiKey', header: 'X Key', value: { ssm: '/k' } } }],
      'auth.header: is not a valid HTTP header name',
    ],
    [
      [{ ...base, auth: { kind: 'apiKey', header: 'webhook-signature', value: { ssm: '/k' } } }],
      "auth.header: 'webhook-signature' is set by the function itself",
    ],
    [
      [{ ...base, auth: { kind: 'apiKey', header: 'X-Key', value: { ssm: '/k' } }, headers: { 'x-key': 'v' } }],
      "headers: 'X-Key' is the apiKey header",
    ],
    [[{ name: 7, url: base.url }], 'endpoints[0]: name: must be a string, not a number'],
    [
      [{ ...base, filter: { extensions: { tenant: ['acme', 7] } } }],
      'filter.extensions.tenant: must be a non-empty string or a list of them, not 7',
    ],
    [[{ ...base, timeoutMs: null }], 'timeoutMs: must be a number, not null'],
    [[{ ...base, timeoutMs: true }], 'timeoutMs: must be a number, not a boolean'],
    [[{ ...base, headers: { 'X-Live': true } }], 'headers.X-Live: must be a string, not a boolean: quote the value'],
    [[{ ...base, filter: [] }], 'filter: must be a mapping (key: value), not a list'],
    [
      [{ ...base, signing: { scheme: 'standard-webhooks', secrets: {} } }],
      'signing.secrets: must be a list, not a mapping',
    ],
    [[{ ...base, extra: 1, other: 2 }], "(endpoint): unknown field(s) 'extra', 'other': check the spelling"],
    [[{ url: base.url }], 'endpoints[0]: name: is required'],
    ...[
      'Content-Length',
      'Transfer-Encoding',
      'User-Agent',
      'Idempotency-Key',
      'X-Signature-256',
      'webhook-id',
      'Content-Type',
    ].map((name): [unknown[], string] => [
      [{ ...base, headers: { [name]: 'x' } }],
      `headers.${name}: '${name}' is set by the function itself`,
    ]),
    ...['Content-Encoding', 'Expect', 'TE', 'Trailer', 'Upgrade', 'Keep-Alive', 'Host', 'Connection'].map(
      (name): [unknown[], string] => [
        [{ ...base, headers: { [name]: 'x' } }],
        `headers.${name}: '${name}' is set by the function itself`,
      ],
    ),
  ])('names the file, the endpoint and the field: %j', (endpoints, fragment) => {
    const message = rejection(endpoints);
    expect(message.startsWith(`${SOURCE}: `)).toBe(true);
    expect(message).toContain(fragment);
  });

  it('a kind or scheme written where its mapping belongs asks for the mapping, not for the kind already given', () => {
    expect(rejection([{ ...base, auth: 'bearer' }])).toBe(
      `${SOURCE}: endpoint 'audit' (endpoints[0]): auth: must be a mapping (key: value), not a string: ` +
        "e.g. { kind: bearer, token: { ssm: <parameter name> } }; kind is one of 'bearer', 'basic', 'apiKey', 'oauth2-client-credentials'",
    );
    expect(rejection([{ ...base, signing: 'standard-webhooks' }])).toContain(
      "signing: must be a mapping (key: value), not a string: e.g. { scheme: standard-webhooks, secrets: [{ ssm: <parameter name> }] }; scheme is one of 'standard-webhooks', 'x-signature-256'",
    );
    expect(rejection([{ ...base, auth: null }])).toContain('auth: must be a mapping (key: value), not null: e.g.');
    // A mapping with a wrong or missing kind still lists the kinds.
    expect(rejection([{ ...base, auth: { kind: 'Bearer' } }])).toContain("auth.kind: must be one of 'bearer'");
    expect(rejection([{ ...base, signing: { secret: { ssm: '/s' } } }])).toContain(
      "signing.scheme: must be one of 'standard-webhooks', 'x-signature-256'",
    );
  });

  it('refuses a static header named like a credential, never showing its value (it is bundled in clear)', () => {
    for (const name of ['X-Api-Key', 'api_key', 'X-Auth-Token', 'X-Access-Token', 'Proxy-Authorization', 'Cookie']) {
      const message = rejection([{ ...base, headers: { [name]: 'sk_live_pasted' } }]);
      expect(message).toContain(`headers.${name}: '${name}' is named like a credential`);
      expect(message).toContain('auth: { kind: apiKey');
      expect(message).not.toContain('sk_live_pasted');
    }
    // Headers that merely mention a key or an id stay static headers.
    for (const name of ['X-Tenant', 'X-Partition-Key', 'X-Request-Source', 'X-Session-Region']) {
      expect(parseEndpointsDocument({ endpoints: [{ ...base, headers: { [name]: 'v' } }] }, SOURCE)).toHaveLength(1);
    }
  });

  it('refuses unquoted YAML numbers as extension filter values, naming the file and the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'endpoints-'));
    const path = join(dir, 'stage.yml');
    const yaml = 'endpoints:\n  - name: audit\n    url: https://audit.example.com/in\n    filter:\n      extensions:\n';
    writeFileSync(path, `${yaml}        tenant: [007, 0x1F]\n`);
    expect(() => readEndpointsFile(path)).toThrow(
      new RegExp(`^${path}: endpoint 'audit' \\(endpoints\\[0\\]\\): filter\\.extensions\\.tenant: .*not 7: quote`),
    );
    writeFileSync(path, `${yaml}        tenant: ['007', "0x1F"]\n`);
    expect(readEndpointsFile(path).endpoints[0]?.filter?.extensions).toEqual({ tenant: ['007', '0x1F'] });
  });

  it.each([
    [{ timeoutMs: '3s' }, 'timeoutMs: must be a number, not a string: write digits only, without quotes or units'],
    [{ maxAttempts: '4' }, 'maxAttempts: must be a number, not a string'],
    [{ headers: { 'X-Tenant': 7 } }, 'headers.X-Tenant: must be a string, not a number: quote the value'],
    [{ filter: 'orders' }, 'filter: must be a mapping (key: value), not a string'],
    [{ timeoutMs: 1.5 }, 'timeoutMs: must be a whole number'],
    [{ retrySchedule: [] }, 'retrySchedule: must be at least 1 item(s)'],
    [{ retrySchedule: Array.from({ length: 21 }, () => 5) }, 'retrySchedule: must be at most 20 item(s)'],
    [{ retrySchedule: [5, 0] }, 'retrySchedule[1]: must be at least 1'],
    [{ retrySchedule: [43_201] }, 'retrySchedule[0]: must be at most 43200'],
    [{ retrySchedule: [2.5] }, 'retrySchedule[0]: must be a whole number'],
    [
      { auth: { kind: 'bearer' } },
      'auth.token: is required: a reference to a stored secret, { ssm: <parameter name> }',
    ],
    [{ auth: { kind: 'Bearer', token: { ssm: '/t' } } }, "auth.kind: must be one of 'bearer', 'basic', 'apiKey'"],
    [{ signing: { scheme: 'hmac', secret: { ssm: '/t' } } }, "signing.scheme: must be one of 'standard-webhooks'"],
    [{ url: 'audit.example.com/in' }, 'url: has no valid absolute URL: it must start with https://'],
  ])('says what a wrong value should be, not that it is missing: %j', (fields, fragment) => {
    const message = rejection([{ ...base, ...fields }]);
    expect(message).toContain(fragment);
    expect(message).not.toContain('is required: set');
  });

  it('refuses Standard Webhooks signing in binary mode, saying why and what to use instead', () => {
    const signing = { scheme: 'standard-webhooks', secrets: [{ ssm: '/s' }] };
    expect(rejection([{ ...base, contentMode: 'binary', signing }])).toBe(
      `${SOURCE}: endpoint 'audit' (endpoints[0]): contentMode: binary with signing scheme 'standard-webhooks' is ` +
        "refused: the body is then the event's data, which Standard Webhooks libraries verify only as UTF-8 JSON " +
        '(bytes from data_base64 fail, text fails to parse), and the ce- headers would go unsigned. Use ' +
        'contentMode: structured (the whole event is the signed body), or scheme: x-signature-256 (an HMAC of the ' +
        'exact bytes) if the receiver needs binary mode',
    );
    const accepted = (settings: object) => parseEndpointsDocument({ endpoints: [{ ...base, ...settings }] }, SOURCE);
    expect(accepted({ contentMode: 'structured', signing })).toHaveLength(1);
    expect(
      accepted({ contentMode: 'binary', signing: { scheme: 'x-signature-256', secret: { ssm: '/s' } } }),
    ).toHaveLength(1);
  });

  it('never echoes what may be a secret: a value inline, or pasted into ssm: / secretsmanager:', () => {
    const secret = 'sk_live_51Hx+/9aQ';
    for (const token of [secret, { ssm: `${secret} ` }, { secretsmanager: `${secret} !` }, { ssm: '/t', sm: secret }]) {
      const message = rejection([{ ...base, auth: { kind: 'bearer', token } }]);
      expect(message).toMatch(/auth\.token/);
      expect(message).not.toContain(secret);
    }
    expect(rejection([{ ...base, auth: { kind: 'bearer', token: secret } }])).toContain(
      'auth.token: must be a reference to a stored secret, { ssm: <parameter name> } or { secretsmanager: <secret name> }, never the secret itself',
    );
  });

  it('accepts header values Node sends as they are (tab, Latin-1)', () => {
    const [endpoint] = parseEndpointsDocument(
      { endpoints: [{ ...base, headers: { 'X-Team': 'caf\u00e9\tA' } }] },
      SOURCE,
    );
    expect(endpoint?.headers).toEqual({ 'X-Team': 'caf\u00e9\tA' });
  });

  it('never repeats a password given in a URL', () => {
    const message = rejection([{ ...base, url: 'https://user:hunter2@audit.example.com/in' }]);
    expect(message).toContain('credentials in its URL');
    expect(message).not.toContain('hunter2');
  });

  it('accepts Authorization as an apiKey header (ApiKey abc), and names an endpoint without a name by its index', () => {
    const auth = { kind: 'apiKey', header: 'Authorization', value: { ssm: '/k' } };
    expect(parseEndpointsDocument({ endpoints: [{ ...base, auth }] }, SOURCE)[0]?.auth).toEqual(auth);
    // Static headers beside an apiKey are fine as long as none is the apiKey header.
    const withHeaders = { ...base, auth: { ...auth, header: 'X-Key' }, headers: { 'X-Tenant': 'acme' } };
    expect(parseEndpointsDocument({ endpoints: [withHeaders] }, SOURCE)[0]?.headers).toEqual({ 'X-Tenant': 'acme' });
    expect(() => parseEndpointsDocument({ endpoints: [{ name: 7 }] }, SOURCE)).toThrow(`${SOURCE}: endpoints[0]: `);
  });

  it('says what the file should look like when its top level is wrong', () => {
    expect(() => parseEndpointsDocument('endpoints', SOURCE)).toThrow(
      `${SOURCE}: must be a mapping (key: value), not a string (expected 'endpoints:', a list of endpoints)`,
    );
    expect(() => parseEndpointsDocument({ endpoints: 'a' }, SOURCE)).toThrow(
      `${SOURCE}: endpoints: must be a list, not a string (expected 'endpoints:', a list of endpoints)`,
    );
    expect(() => parseEndpointsDocument({ endpoints: [base], extra: 1 }, SOURCE)).toThrow(
      `${SOURCE}: unknown field(s) 'extra': check the spelling (expected 'endpoints:', a list of endpoints)`,
    );
  });

  it('rejects a file without an endpoints list', () => {
    expect(() => parseEndpointsDocument({ endpoint: [] }, SOURCE)).toThrow(/^endpoints\/prod.yml: .*endpoints/);
    expect(() => parseEndpointsDocument({ endpoints: [] }, SOURCE)).toThrow(/list at least one endpoint/);
  });

  it('loadConfig takes the file, and refuses ENDPOINTS set as well', () => {
    const file = { document: { endpoints: [base] }, source: SOURCE };
    expect(loadConfig({}, file).endpoints.map((e) => e.name)).toEqual(['audit']);
    expect(() => loadConfig({ ENDPOINTS: 'a=https://a.example.com/x' }, file)).toThrow(
      /ENDPOINTS: is set and so is the endpoints file endpoints\/prod.yml/,
    );
  });
});

describe('retrySchedule', () => {
  it('keeps an endpoint’s own schedule and leaves the default to the lanes when absent', () => {
    const [own, plain] = parseEndpointsDocument(
      {
        endpoints: [
          { ...base, retrySchedule: [1, 43_200] },
          { ...base, name: 'crm' },
        ],
      },
      SOURCE,
    );
    expect(own?.retrySchedule).toEqual([1, 43_200]);
    expect(plain?.retrySchedule).toBeUndefined();
    expect(DEFAULT_RETRY_SCHEDULE).toEqual([5, 60, 300, 1800, 7200, 18000, 36000, 36000]);
  });
});
