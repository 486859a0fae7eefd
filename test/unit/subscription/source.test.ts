import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCredentialSpec } from '../../../lib/credentials/credentials';
import { ConfigError } from '../../../lib/errors';
import { parseEndpointsDocument } from '../../../lib/subscription/schema';
import {
  checkCredentialOverlap,
  checkSigningSecrets,
  endpointsDocument,
  secretRefs,
} from '../../../lib/subscription/source';

const dir = mkdtempSync(join(tmpdir(), 'endpoints-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const document = { endpoints: [{ name: 'a', url: 'https://a.example.com/in' }] };

describe('endpointsDocument', () => {
  it('prefers the bundled document, then ENDPOINTS_FILE, else none', () => {
    const file = join(dir, 'endpoints.json');
    writeFileSync(file, JSON.stringify({ endpoints: [] }));
    expect(endpointsDocument({ ENDPOINTS_FILE: file }, JSON.stringify(document))).toEqual({
      document,
      source: 'endpoints file (bundled)',
    });
    expect(endpointsDocument({ ENDPOINTS_FILE: file }, '')).toEqual({ document: { endpoints: [] }, source: file });
    expect(endpointsDocument({}, undefined)).toBeUndefined();
  });

  it('names ENDPOINTS_FILE when the file is missing or not JSON', () => {
    const yaml = join(dir, 'endpoints.yml');
    writeFileSync(yaml, 'endpoints:\n  - name: a\n');
    expect(() => endpointsDocument({ ENDPOINTS_FILE: join(dir, 'nope.json') }, undefined)).toThrow(
      /^ENDPOINTS_FILE: cannot read/,
    );
    expect(() => endpointsDocument({ ENDPOINTS_FILE: yaml }, undefined)).toThrow(
      /^ENDPOINTS_FILE: '.*endpoints\.yml' is not JSON .*convert the YAML file/,
    );
  });

  it('reads ENDPOINTS_FILE without the spaces around it, and takes a blank value as none', () => {
    const file = join(dir, 'spaced.json');
    writeFileSync(file, JSON.stringify(document));
    expect(endpointsDocument({ ENDPOINTS_FILE: `  ${file}\n` }, undefined)).toEqual({ document, source: file });
    expect(endpointsDocument({ ENDPOINTS_FILE: '  ' }, undefined)).toBeUndefined();
  });
});

describe('secretRefs and checkCredentialOverlap', () => {
  const endpoints = parseEndpointsDocument(
    {
      endpoints: [
        { name: 'a', url: 'https://a.example.com/in', auth: { kind: 'bearer', token: { ssm: '/a/token' } } },
        {
          name: 'b',
          url: 'https://b.example.com/in',
          signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/b/new' }, { secretsmanager: 'b-old' }] },
        },
        { name: 'c', url: 'https://c.example.com/in' },
      ],
    },
    'test.yml',
  );

  it('lists every secret reference with its endpoint and field', () => {
    expect(secretRefs(endpoints)).toEqual([
      { endpoint: 'a', field: 'auth.token', store: 'ssm', name: '/a/token' },
      { endpoint: 'b', field: 'signing.secrets[0]', store: 'ssm', name: '/b/new' },
      { endpoint: 'b', field: 'signing.secrets[1]', store: 'secretsmanager', name: 'b-old' },
    ]);
  });

  it('refuses ENDPOINT_CREDENTIALS for an endpoint the file already authenticates or signs', () => {
    const names = ['a', 'b', 'c'];
    expect(() => checkCredentialOverlap(parseCredentialSpec('c=bearer:ssm:/c', names), endpoints)).not.toThrow();
    expect(() => checkCredentialOverlap(parseCredentialSpec('a=bearer:ssm:/x', names), endpoints)).toThrow(ConfigError);
    expect(() => checkCredentialOverlap(parseCredentialSpec('b=hmac:ssm:/x', names), endpoints)).toThrow(
      "ENDPOINT_CREDENTIALS: endpoint 'b' also has signing in the endpoints file: keep one",
    );
  });

  it('names the field that overlaps: auth for a bearer token, signing for an HMAC secret', () => {
    const names = ['a', 'b', 'c'];
    expect(() => checkCredentialOverlap(parseCredentialSpec('a=bearer:ssm:/x', names), endpoints)).toThrow(
      "ENDPOINT_CREDENTIALS: endpoint 'a' also has auth in the endpoints file: keep one (the file's auth is preferred)",
    );
    expect(() => checkCredentialOverlap(parseCredentialSpec('b=hmac:ssm:/x', names), endpoints)).toThrow(
      "(the file's signing is preferred)",
    );
    // A bearer token beside the file's signing, or an HMAC secret beside its auth, is no overlap.
    expect(() =>
      checkCredentialOverlap(parseCredentialSpec('a=hmac:ssm:/x,b=bearer:ssm:/y', names), endpoints),
    ).not.toThrow();
  });

  it('accepts ENDPOINT_CREDENTIALS for an endpoint the file does not list (ENDPOINTS names it)', () => {
    const names = ['a', 'b', 'c', 'z'];
    expect(() => checkCredentialOverlap(parseCredentialSpec('z=bearer:ssm:/z', names), endpoints)).not.toThrow();
    expect(() => checkCredentialOverlap(parseCredentialSpec('z=hmac:ssm:/z', names), endpoints)).not.toThrow();
  });
});

describe('checkSigningSecrets', () => {
  const endpoints = parseEndpointsDocument(
    {
      endpoints: [
        {
          name: 'b',
          url: 'https://b.example.com/in',
          signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/b/new' }, { ssm: '/b/old' }] },
        },
      ],
    },
    'test.yml',
  );

  it('passes Standard Webhooks secrets and names the first that is not one, without its value', () => {
    const good = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    expect(() =>
      checkSigningSecrets(
        endpoints,
        new Map([
          ['ssm:/b/new', good],
          ['ssm:/b/old', good],
        ]),
      ),
    ).not.toThrow();
    const bad = new Map([
      ['ssm:/b/new', good],
      ['ssm:/b/old', 'password123'],
    ]);
    expect(() => checkSigningSecrets(endpoints, bad)).toThrow(
      "endpoint 'b' signing.secrets[1] (ssm:/b/old) is not a Standard Webhooks secret",
    );
    expect(() => checkSigningSecrets(endpoints, bad)).not.toThrow(/password123/);
  });

  it('leaves alone endpoints without signing and x-signature-256 secrets, which are not Standard Webhooks keys', () => {
    const others = parseEndpointsDocument(
      {
        endpoints: [
          { name: 'plain', url: 'https://plain.example.com/in' },
          {
            name: 'hmac',
            url: 'https://hmac.example.com/in',
            signing: { scheme: 'x-signature-256', secret: { ssm: '/hmac/secret' } },
          },
        ],
      },
      'test.yml',
    );
    expect(() => checkSigningSecrets(others, new Map([['ssm:/hmac/secret', 'password123']]))).not.toThrow();
  });
});
