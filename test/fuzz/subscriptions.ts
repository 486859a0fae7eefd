import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { Filter, Match } from '../../lib/subscription/schema';

/** The CloudEvent an event id of the scenario stands for: every message with that id carries these attributes. */
export interface EventShape {
  type: string;
  source: string;
  /** Absent, null (= absent), or a value. */
  subject?: string | null;
  extensions: Record<string, string | number | boolean | null>;
  /** What its data is: JSON, null, none at all, data_base64, or a string of another content type. */
  data: 'json' | 'null' | 'absent' | 'base64' | 'text';
}

export type AuthKind = 'none' | 'bearer' | 'basic' | 'apiKey' | 'oauth';
export type SigningKind = 'none' | 'standard-webhooks' | 'x-signature-256';

/** What the scenario's endpoints file says of one endpoint (its name and URL come from the running endpoint). */
export interface SubscriptionSpec {
  filter?: Filter;
  contentMode?: 'structured' | 'binary';
  auth: AuthKind;
  signing: SigningKind;
  /** Standard Webhooks: how many secrets sign every request (a rotation in progress). */
  signingSecrets: number;
  rateLimitPerSecond?: number;
}

/** How the loopback OAuth token server answers during one invocation. */
export type TokenMode = 'ok' | 'fail' | 'refuse' | 'hang';

const TYPES = ['com.example.order.created', 'com.example.order.paid', 'com.example.user.created'];
const SOURCES = ['urn:fuzz', 'urn:fuzz:billing'];
const SUBJECTS = ['orders/1', 'orders/2', 'users/9'];
const EXTENSIONS = ['tenant', 'region'];
const EXTENSION_VALUES = ['acme', 'globex', '7'];

export const eventShapeArb: fc.Arbitrary<EventShape> = fc.record(
  {
    type: fc.constantFrom(...TYPES),
    source: fc.constantFrom(...SOURCES),
    subject: fc.option(fc.oneof(fc.constantFrom(...SUBJECTS), fc.constant(null)), { nil: undefined }),
    extensions: fc.dictionary(
      fc.constantFrom(...EXTENSIONS),
      // 7 and true as JSON numbers and booleans: routing and the ce- headers compare them as text; null is absent.
      fc.constantFrom<string | number | boolean | null>(...EXTENSION_VALUES, 7, true, null),
      { maxKeys: 2 },
    ),
    data: fc.constantFrom<EventShape['data']>('json', 'json', 'null', 'absent', 'base64', 'text'),
  },
  { requiredKeys: ['type', 'source', 'extensions', 'data'] },
);

const oneOrMany = (match: fc.Arbitrary<Match>) =>
  fc.oneof(match, fc.array(match, { minLength: 1, maxLength: 2 })) as fc.Arbitrary<Match | Match[]>;

const filterArb: fc.Arbitrary<Filter> = fc.record(
  {
    type: oneOrMany(
      fc.oneof(
        fc.constantFrom(...TYPES),
        fc.constantFrom({ prefix: 'com.example.order.' }, { prefix: 'com.example.u' }),
      ),
    ),
    source: oneOrMany(fc.oneof(fc.constantFrom(...SOURCES), fc.constant({ prefix: 'urn:fuzz:' }))),
    subject: oneOrMany(fc.oneof(fc.constantFrom(...SUBJECTS), fc.constant({ prefix: 'orders/' }))),
    extensions: fc.dictionary(
      fc.constantFrom(...EXTENSIONS),
      fc.oneof(
        // The texts 'null' and 'undefined' must never match a null or absent extension.
        fc.constantFrom(...EXTENSION_VALUES, 'true', 'null', 'null', 'undefined'),
        fc.array(fc.constantFrom(...EXTENSION_VALUES), { minLength: 1, maxLength: 2 }),
      ),
      { minKeys: 1, maxKeys: 2 },
    ),
  },
  { requiredKeys: [] },
);

export const subscriptionArb: fc.Arbitrary<SubscriptionSpec> = fc
  .record(
    {
      filter: filterArb,
      contentMode: fc.constantFrom('structured' as const, 'binary' as const),
      auth: fc.constantFrom<AuthKind>('none', 'none', 'bearer', 'basic', 'apiKey', 'oauth', 'oauth'),
      signing: fc.constantFrom<SigningKind>('none', 'standard-webhooks', 'x-signature-256'),
      signingSecrets: fc.integer({ min: 1, max: 2 }),
      rateLimitPerSecond: fc.constantFrom(5, 50, 1_000),
    },
    { requiredKeys: ['auth', 'signing', 'signingSecrets'] },
  )
  .map((spec) =>
    // Binary mode with Standard Webhooks is refused by the schema (issue 15 A4): such an endpoint signs x-signature-256.
    spec.contentMode === 'binary' && spec.signing === 'standard-webhooks'
      ? { ...spec, signing: 'x-signature-256' }
      : spec,
  );

export const tokenModeArb: fc.Arbitrary<TokenMode> = fc.oneof(
  { weight: 6, arbitrary: fc.constant('ok' as const) },
  { weight: 1, arbitrary: fc.constantFrom<TokenMode>('fail', 'refuse', 'hang') },
);

const list = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

/** The model's own reading of a filter (not lib/subscription/routing.ts): does the event go to this endpoint? */
export function modelRoutes(filter: Filter | undefined, event: EventShape): boolean {
  if (!filter) return true;
  const matches = (values: Match | Match[] | undefined, value: string | null | undefined) =>
    values === undefined ||
    (typeof value === 'string' &&
      list(values).some((m) => (typeof m === 'string' ? m === value : value.startsWith(m.prefix))));
  const extensionsMatch = Object.entries(filter.extensions ?? {}).every(([name, wanted]) => {
    const value = event.extensions[name];
    return value !== undefined && value !== null && list(wanted).includes(String(value));
  });
  return (
    matches(filter.type, event.type) &&
    matches(filter.source, event.source) &&
    matches(filter.subject, event.subject) &&
    extensionsMatch
  );
}

/** The secret values an endpoint's file entry refers to, by field; each holds the I5 mark but signing keys. */
export interface EndpointSecrets {
  token?: string;
  password?: string;
  apiKey?: string;
  clientSecret?: string;
  /** Standard Webhooks secrets ('whsec_…') or the x-signature-256 HMAC secret. */
  signing: string[];
}

export function endpointSecrets(name: string, spec: SubscriptionSpec, mark: string): EndpointSecrets {
  const secrets: EndpointSecrets = { signing: [] };
  if (spec.auth === 'bearer') secrets.token = `${mark}-bearer-${name}`;
  if (spec.auth === 'basic') secrets.password = `${mark}-password-${name}`;
  if (spec.auth === 'apiKey') secrets.apiKey = `${mark}-apikey-${name}`;
  if (spec.auth === 'oauth') secrets.clientSecret = `${mark}-client-secret-${name}`;
  if (spec.signing === 'standard-webhooks') {
    secrets.signing = Array.from({ length: spec.signingSecrets }, () => `whsec_${randomBytes(24).toString('base64')}`);
  }
  if (spec.signing === 'x-signature-256') secrets.signing = [`${mark}-hmac-${name}`];
  return secrets;
}

const ref = (name: string, field: string) => ({ ssm: `/fuzz/${name}/${field}` });

/**
 * One endpoint of the endpoints file, and the values of its secret references by the key the function's secret source
 * uses (`ssm:<name>`).
 */
export function fileEntry(
  name: string,
  url: string,
  spec: SubscriptionSpec,
  secrets: EndpointSecrets,
  tokenUrl: string,
): { entry: Record<string, unknown>; values: Array<[string, string]> } {
  const values: Array<[string, string]> = [];
  const secret = (field: string, value: string) => {
    values.push([`ssm:/fuzz/${name}/${field}`, value]);
    return ref(name, field);
  };
  const auth = {
    none: undefined,
    bearer: () => ({ kind: 'bearer', token: secret('token', secrets.token!) }),
    basic: () => ({ kind: 'basic', username: `user-${name}`, password: secret('password', secrets.password!) }),
    apiKey: () => ({ kind: 'apiKey', header: 'X-Api-Key', value: secret('apikey', secrets.apiKey!) }),
    oauth: () => ({
      kind: 'oauth2-client-credentials',
      tokenUrl,
      clientId: `client-${name}`,
      clientSecret: secret('client-secret', secrets.clientSecret!),
    }),
  }[spec.auth]?.();
  const signing =
    spec.signing === 'standard-webhooks'
      ? { scheme: spec.signing, secrets: secrets.signing.map((value, i) => secret(`whsec-${i}`, value)) }
      : spec.signing === 'x-signature-256'
        ? { scheme: spec.signing, secret: secret('hmac', secrets.signing[0]!) }
        : undefined;
  const entry = {
    name,
    url,
    ...(spec.filter ? { filter: spec.filter } : {}),
    ...(spec.contentMode ? { contentMode: spec.contentMode } : {}),
    ...(auth ? { auth } : {}),
    ...(signing ? { signing } : {}),
    ...(spec.rateLimitPerSecond !== undefined ? { rateLimitPerSecond: spec.rateLimitPerSecond } : {}),
  };
  return { entry, values };
}
