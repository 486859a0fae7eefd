import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CredentialRef, parseCredentialSpec } from '../../../lib/credentials/credential-spec';
import { ConfigError } from '../../../lib/errors';

const ENDPOINTS = ['analytics', 'audit', 'crm'];
const AUDIT_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:ingest/prod/audit-key-AbCdEf';
describe('parseCredentialSpec', () => {
  it('reads bearer and hmac entries from SSM and Secrets Manager, ARNs included', () => {
    const spec = parseCredentialSpec(
      ` analytics=bearer:ssm:/ingest/prod/analytics-token , audit=hmac:secretsmanager:${AUDIT_ARN},`,
      ENDPOINTS,
    );
    expect(spec).toEqual([
      { endpoint: 'analytics', kind: 'bearer', store: 'ssm', name: '/ingest/prod/analytics-token' },
      { endpoint: 'audit', kind: 'hmac', store: 'secretsmanager', name: AUDIT_ARN },
    ]);
  });

  it('treats an unset or blank variable as no credentials', () => {
    expect(parseCredentialSpec(undefined, ENDPOINTS)).toEqual([]);
    expect(parseCredentialSpec('  ', ENDPOINTS)).toEqual([]);
  });

  it.each([
    ['analytics', /'analytics' is not <endpoint>=<kind>:<store>:<name>/],
    ['analytics=bearer:/ingest/token', /is not <endpoint>=<kind>:<store>:<name>/],
    ['analytcs=bearer:ssm:/ingest/token', /endpoint 'analytcs', which is not in ENDPOINTS \(analytics, audit, crm\)/],
    ['analytics=basic:ssm:/ingest/token', /kind 'basic': use 'bearer' or 'hmac'/],
    ['analytics=bearer:s3:/ingest/token', /store 's3': use 'ssm' or 'secretsmanager'/],
    ['analytics=bearer:ssm:/ingest/to ken', /'\/ingest\/to ken' is not an SSM parameter name/],
    ['analytics=hmac:secretsmanager:', /'' is not a Secrets Manager secret name/],
    ['analytics=bearer:ssm:/a,analytics=hmac:ssm:/b', /endpoint 'analytics' has two entries/],
  ])('rejects %s with a ConfigError naming ENDPOINT_CREDENTIALS and the entry', (value, message) => {
    let caught: unknown;
    try {
      parseCredentialSpec(value, ENDPOINTS);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).variable).toBe('ENDPOINT_CREDENTIALS');
    expect((caught as ConfigError).message).toMatch(/^ENDPOINT_CREDENTIALS: /);
    expect((caught as ConfigError).message).toMatch(message);
  });

  it('parses back whatever valid spec it is given', () => {
    const ssmName = fc.stringMatching(/^\/?[A-Za-z0-9_.\-/]{1,40}$/);
    const secretName = fc.stringMatching(/^[A-Za-z0-9/_+=.@-]{1,40}$/);
    const ref = fc.oneof(
      fc.record({
        kind: fc.constantFrom('bearer' as const, 'hmac' as const),
        store: fc.constant('ssm' as const),
        name: ssmName,
      }),
      fc.record({
        kind: fc.constantFrom('bearer' as const, 'hmac' as const),
        store: fc.constant('secretsmanager' as const),
        name: fc.oneof(
          secretName,
          secretName.map((n) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${n}`),
        ),
      }),
    );
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.constantFrom(...ENDPOINTS), { minLength: 1 }),
        fc.array(ref, { minLength: 3, maxLength: 3 }),
        (names, refs) => {
          const expected: CredentialRef[] = names.map((endpoint, i) => ({ endpoint, ...refs[i]! }));
          const text = expected.map((r) => `${r.endpoint}=${r.kind}:${r.store}:${r.name}`).join(',');
          expect(parseCredentialSpec(text, ENDPOINTS)).toEqual(expected);
        },
      ),
    );
  });
});
