import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readEndpointsFile } from '../../../infra/endpoints-file';
import { loadConfig } from '../../../lib/config';
import { ConfigError } from '../../../lib/errors';
import { parseEndpointsDocument } from '../../../lib/subscription/schema';

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
    expect(endpoints[0]).toMatchObject({ filter: { type: [{ prefix: 'com.example.order.' }] } });
    expect(endpoints[1]).toMatchObject({ contentMode: 'binary', signing: { scheme: 'standard-webhooks' } });
    expect(endpoints[2]).toMatchObject({ auth: { kind: 'oauth2-client-credentials' }, rateLimitPerSecond: 20 });
    expect(endpoints[2]?.url).toEqual(new URL('https://api.crm.example.com/v2/events'));
  });

  it.each([
    [[{ ...base, url: 'http://10.0.0.7/in' }], "endpoint 'audit' (endpoints[0]): url: must use https"],
    [[{ ...base, contentMode: 'batch' }], "endpoint 'audit' (endpoints[0]): contentMode:"],
    [
      [base, { ...base, name: 'crm', signing: { scheme: 'standard-webhooks', secrets: [{ ssm: 'bad name' }] } }],
      "endpoint 'crm' (endpoints[1]): signing.secrets[0].ssm: 'bad name' is not an SSM parameter name",
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
