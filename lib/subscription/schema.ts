import * as z from 'zod/mini';
import { parseEndpointUrl } from '../config/endpoint-url';
import { checkSecretName } from '../credentials/credential-spec';
import { ConfigError } from '../errors';
import { CONTEXT_ATTRIBUTES } from '../event';

/**
 * The endpoints file: one subscription per endpoint (name, url, and what, how and how fast it receives).
 * Secrets are references to SSM parameters or Secrets Manager secrets, read at cold start; never values.
 */

const NAME = /^[a-z0-9][a-z0-9-]*$/;
// RFC 9110 token characters: what a header field name may hold.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// The function's own headers, and those that change how HTTP frames the request (Node refuses or misframes them).
const RESERVED_HEADERS = new Set([
  'authorization',
  'connection',
  'content-encoding',
  'content-length',
  'content-type',
  'expect',
  'host',
  'idempotency-key',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'x-signature-256',
]);
// RFC 9110 field-value characters (HTAB, visible ASCII, space, obs-text): anything else makes every request throw.
export const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const RESERVED_PREFIXES = ['ce-', 'webhook-'];

function isReserved(lowerCaseName: string): boolean {
  return RESERVED_HEADERS.has(lowerCaseName) || RESERVED_PREFIXES.some((prefix) => lowerCaseName.startsWith(prefix));
}

const text = z.string().check(z.minLength(1, 'must be a non-empty string'));
const oneOrMany = <T extends z.ZodMiniType>(item: T) => z.union([item, z.array(item).check(z.minLength(1))]);

// The name is not repeated: what fails here is often the secret itself, pasted in place of its name.
const secretName = (store: 'ssm' | 'secretsmanager') =>
  text.check(
    z.refine((name) => checkSecretName(store, name) === undefined, {
      error: (issue) => `${checkSecretName(store, String(issue.input))} (the value is not shown: it may be a secret)`,
    }),
  );

const SECRET_REF_FORMS =
  'a reference to a stored secret, { ssm: <parameter name> } or { secretsmanager: <secret name> }, never the secret itself';

/** Where a secret lives: `{ ssm: /name }` (SecureString parameter) or `{ secretsmanager: name }` (SecretString). */
export const SecretRefSchema = z.union(
  [z.strictObject({ ssm: secretName('ssm') }), z.strictObject({ secretsmanager: secretName('secretsmanager') })],
  {
    error: (issue) =>
      issue.input === undefined ? `is required: ${SECRET_REF_FORMS}` : `must be ${SECRET_REF_FORMS} (not shown)`,
  },
);
export type SecretRefValue = z.infer<typeof SecretRefSchema>;

const httpsUrl = text.check(
  z.refine((raw) => !('problem' in parseEndpointUrl(raw)), {
    error: (issue) => {
      const parsed = parseEndpointUrl(String(issue.input));
      return 'problem' in parsed ? parsed.problem : 'is not a URL';
    },
  }),
);

const headerName = text.check(z.regex(HEADER_NAME, 'is not a valid HTTP header name'));

const AUTH_KINDS = ['bearer', 'basic', 'apiKey', 'oauth2-client-credentials'];
const quoted = (values: readonly string[]) => values.map((value) => `'${value}'`).join(', ');
const oneOf = (values: readonly string[]) => `must be one of ${quoted(values)} (spelt exactly so)`;

/** A union's message: its kinds, or, for `auth: bearer` (a kind alone, no mapping), the mapping wanted. */
const unionError =
  (field: 'kind' | 'scheme', values: readonly string[], example: string) =>
  (issue: { input?: unknown }): string => {
    const { input } = issue;
    if (typeof input === 'object' && input !== null && !Array.isArray(input)) return oneOf(values);
    // The value is not shown: a secret pasted here is still a secret.
    const got = input === undefined ? 'nothing' : kindOf(input);
    return `must be a mapping (key: value), not ${got}: e.g. ${example}; ${field} is one of ${quoted(values)}`;
  };

export const AuthSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ kind: z.literal('bearer'), token: SecretRefSchema }),
    z.strictObject({
      kind: z.literal('basic'),
      // RFC 7617: the first ':' ends the user-id, so a user-id with one would be split wrongly by every receiver.
      username: text.check(z.regex(/^[^:\p{Cc}]*$/u, "must not contain ':' or control characters (RFC 7617)")),
      password: SecretRefSchema,
    }),
    z.strictObject({ kind: z.literal('apiKey'), header: headerName, value: SecretRefSchema }),
    z.strictObject({
      kind: z.literal('oauth2-client-credentials'),
      tokenUrl: httpsUrl,
      clientId: text,
      clientSecret: SecretRefSchema,
      // RFC 6749 section 2.3.1: client_secret_basic (the default) or client_secret_post.
      clientAuth: z.optional(z.enum(['basic', 'post'])),
      scope: z.optional(text),
    }),
  ],
  { error: unionError('kind', AUTH_KINDS, '{ kind: bearer, token: { ssm: <parameter name> } }') },
);
export type Auth = z.infer<typeof AuthSchema>;

export const SigningSchema = z.discriminatedUnion(
  'scheme',
  [
    // Several secrets all sign every request, so a receiver can move to a new one without a failed delivery.
    z.strictObject({
      scheme: z.literal('standard-webhooks'),
      secrets: z.array(SecretRefSchema).check(z.minLength(1), z.maxLength(5)),
    }),
    // The older hex HMAC of the body in X-Signature-256, for receivers built against it.
    z.strictObject({ scheme: z.literal('x-signature-256'), secret: SecretRefSchema }),
  ],
  {
    error: unionError(
      'scheme',
      ['standard-webhooks', 'x-signature-256'],
      '{ scheme: standard-webhooks, secrets: [{ ssm: <parameter name> }] }',
    ),
  },
);
export type Signing = z.infer<typeof SigningSchema>;

/** A filter value: a string means exactly that; `{ prefix }` means starts with it. */
const MatchSchema = z.union([text, z.strictObject({ prefix: text })]);
export type Match = z.infer<typeof MatchSchema>;

const isText = (value: unknown): value is string => typeof value === 'string' && value.length > 0;

// Only strings: YAML reads `tenant: 007` as the number 7, which the event's "007" would never match.
const extensionValues = z.custom<string | string[]>(
  (value) => isText(value) || (Array.isArray(value) && value.length > 0 && value.every(isText)),
  {
    error: (issue) => {
      const bad = Array.isArray(issue.input) ? issue.input.find((value) => !isText(value)) : issue.input;
      return `must be a non-empty string or a list of them, not ${JSON.stringify(bad) ?? 'nothing'}: quote the value in the file (YAML reads 007 as 7 and true as a boolean)`;
    },
  },
);

export const FilterSchema = z.strictObject({
  type: z.optional(oneOrMany(MatchSchema)),
  source: z.optional(oneOrMany(MatchSchema)),
  subject: z.optional(oneOrMany(MatchSchema)),
  extensions: z.optional(
    z.record(
      z.string().check(
        z.regex(/^[a-z0-9]+$/, 'is not a CloudEvents extension name (lower-case letters, digits)'),
        z.refine((name) => !CONTEXT_ATTRIBUTES.has(name), {
          error: (issue) =>
            `'${String(issue.input)}' is a context attribute, not an extension: filter on type, source or subject directly`,
        }),
      ),
      extensionValues,
    ),
  ),
});
export type Filter = z.infer<typeof FilterSchema>;

const headerValue = z
  .string()
  .check(z.regex(HEADER_VALUE, 'must be one line of printable characters (no control characters, none above U+00FF)'));

// Header names that carry credentials: a static header's value is bundled into the artifact in clear.
const CREDENTIAL_HEADER = /token|secret|passw|pwd|api[-_]?key|credential|cookie|authorization|^x-auth(?:-|$)/i;

const headersSchema = z.record(headerName, headerValue).check(
  z.superRefine((headers, ctx) => {
    for (const name of Object.keys(headers)) {
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower) || RESERVED_PREFIXES.some((prefix) => lower.startsWith(prefix))) {
        ctx.addIssue({ code: 'custom', message: `'${name}' is set by the function itself: remove it`, path: [name] });
      } else if (CREDENTIAL_HEADER.test(name)) {
        const message =
          `'${name}' is named like a credential, and static headers are bundled into the artifact in clear (the value ` +
          `is not shown): use auth: { kind: apiKey, header: ${name}, value: { ssm: <parameter name> } }`;
        ctx.addIssue({ code: 'custom', message, path: [name] });
      }
    }
  }),
);

const wholeNumber = (min: number, max: number) => z.number().check(z.int(), z.gte(min), z.lte(max));
// At least one request in 1,000 s; infra/stage.js compares budgets in whole milli-requests (rates rounded up).
const rate = z.number().check(z.gte(0.001), z.lte(100_000));

// The standardwebhooks libraries sign and verify the body as UTF-8 text and return it parsed as JSON: a binary-mode
// body of data_base64 bytes fails ('No matching signature found'), a text/plain one throws after verifying.
const UNVERIFIABLE_BINARY =
  "binary with signing scheme 'standard-webhooks' is refused: the body is then the event's data, which Standard " +
  'Webhooks libraries verify only as UTF-8 JSON (bytes from data_base64 fail, text fails to parse), and the ce- ' +
  'headers would go unsigned. Use contentMode: structured (the whole event is the signed body), or scheme: ' +
  'x-signature-256 (an HMAC of the exact bytes) if the receiver needs binary mode';

/** An SQS message timer is at most 900 s; a lane re-delays a message until its wait (at most 12 h) is over. */
export const MAX_RETRY_WAIT_S = 43_200;
/** The lane's waits when an endpoint sets no retrySchedule: about 27.6 h in all, like peers' day of retries. */
export const DEFAULT_RETRY_SCHEDULE: readonly number[] = [5, 60, 300, 1800, 7200, 18000, 36000, 36000];
/** Seconds to wait before each delivery from an endpoint's lane; exhausted, the event goes to the DLQ. */
export const RetryScheduleSchema = z.array(wholeNumber(1, MAX_RETRY_WAIT_S)).check(z.minLength(1), z.maxLength(20));

export const SubscriptionSchema = z
  .strictObject({
    name: text.check(z.regex(NAME, 'use lowercase letters, digits and dashes')),
    url: httpsUrl,
    filter: z.optional(FilterSchema),
    contentMode: z.optional(z.enum(['structured', 'binary'])),
    auth: z.optional(AuthSchema),
    signing: z.optional(SigningSchema),
    headers: z.optional(headersSchema),
    timeoutMs: z.optional(wholeNumber(1, 900_000)),
    maxConnections: z.optional(wholeNumber(1, 1024)),
    maxAttempts: z.optional(wholeNumber(1, 20)),
    rateLimitPerSecond: z.optional(rate),
    maxRatePerSecond: z.optional(rate),
    retrySchedule: z.optional(RetryScheduleSchema),
  })
  .check(
    z.superRefine((sub, ctx) => {
      if (sub.contentMode === 'binary' && sub.signing?.scheme === 'standard-webhooks') {
        ctx.addIssue({ code: 'custom', message: UNVERIFIABLE_BINARY, path: ['contentMode'] });
      }
      if (sub.auth?.kind !== 'apiKey') return;
      const header = sub.auth.header.toLowerCase();
      // Authorization is fine for an API key (e.g. 'ApiKey abc'); the others are the function's own.
      if (header !== 'authorization' && isReserved(header)) {
        ctx.addIssue({
          code: 'custom',
          message: `'${sub.auth.header}' is set by the function itself`,
          path: ['auth', 'header'],
        });
      }
      if (Object.keys(sub.headers ?? {}).some((name) => name.toLowerCase() === header)) {
        ctx.addIssue({ code: 'custom', message: `'${sub.auth.header}' is the apiKey header`, path: ['headers'] });
      }
    }),
  );
export type Subscription = z.infer<typeof SubscriptionSchema>;

export const EndpointsFileSchema = z.strictObject({
  endpoints: z.array(z.looseObject({})).check(z.minLength(1, 'list at least one endpoint')),
});

/** One endpoint of the function's configuration; only `name` and `url` are set by the short ENDPOINTS form. */
export type EndpointConfig = Omit<Subscription, 'url'> & { url: URL };

/** zod/mini carries no messages of its own (no locale is loaded): say what each kind of issue means. */
function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field(s) ${issue.keys.map((key) => `'${key}'`).join(', ')}: check the spelling`;
    case 'invalid_type':
      return issue.input === undefined ? 'is required' : wrongType(issue.expected, issue.input);
    case 'invalid_value':
      return `must be ${issue.values.map((value) => JSON.stringify(value)).join(' or ')}`;
    case 'invalid_key':
      return issue.issues[0] ? message(issue.issues[0]) : 'is not an accepted name';
    case 'invalid_union':
      return 'matches none of the accepted forms (see the endpoints file reference)';
    case 'too_small':
      return `must be at least ${String(issue.minimum)}${issue.origin === 'array' ? ' item(s)' : ''}`;
    case 'too_big':
      return `must be at most ${String(issue.maximum)}${issue.origin === 'array' ? ' item(s)' : ''}`;
    default:
      return issue.message;
  }
}

/** What kind of YAML value was given, in the file's words (never the value: it may be a secret). */
function kindOf(input: unknown): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'a list';
  return typeof input === 'object' ? 'a mapping' : `a ${typeof input}`;
}

/** What a value of the wrong type should be, with the usual fix for YAML (never the value: it may be a secret). */
function wrongType(expected: string, input: unknown): string {
  const got = kindOf(input);
  if (expected === 'int') return 'must be a whole number';
  if (expected === 'number' && typeof input === 'string') {
    return `must be a number, not ${got}: write digits only, without quotes or units`;
  }
  if (expected === 'string' && (typeof input === 'number' || typeof input === 'boolean')) {
    return `must be a string, not ${got}: quote the value in the file`;
  }
  const wanted = expected === 'array' ? 'a list' : expected === 'object' ? 'a mapping (key: value)' : `a ${expected}`;
  return `must be ${wanted}, not ${got}`;
}

function hasOwnMessage(issue: z.core.$ZodIssue): boolean {
  return issue.message !== 'Invalid input' && !issue.message.startsWith('Invalid');
}

function message(issue: z.core.$ZodIssue): string {
  return hasOwnMessage(issue) ? issue.message : describe(issue);
}

function path(issue: z.core.$ZodIssue): string {
  return issue.path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${String(part)}`))
    .join('');
}

/**
 * Validates an endpoints document (the parsed YAML or JSON); `source` names it in errors, which name the endpoint
 * and the field too, e.g. "endpoints/prod.yml: endpoint 'audit' (endpoints[1]): signing.secrets[0]: ...".
 */
export function parseEndpointsDocument(document: unknown, source: string): EndpointConfig[] {
  const file = EndpointsFileSchema.safeParse(document, { reportInput: true });
  if (!file.success) {
    const issue = file.error.issues[0]!;
    const where = issue.path.length ? `${path(issue)}: ` : '';
    throw new ConfigError(source, `${where}${message(issue)} (expected 'endpoints:', a list of endpoints)`);
  }
  const seen = new Set<string>();
  return file.data.endpoints.map((raw, index) => {
    const label = typeof raw.name === 'string' ? `endpoint '${raw.name}' (endpoints[${index}])` : `endpoints[${index}]`;
    // reportInput: invalid_type issues then tell a wrong type from a missing field; describe() never shows the input.
    const result = SubscriptionSchema.safeParse(raw, { reportInput: true });
    if (!result.success) {
      const issue = result.error.issues[0]!;
      throw new ConfigError(source, `${label}: ${path(issue) || '(endpoint)'}: ${message(issue)}`);
    }
    const sub = result.data;
    if (seen.has(sub.name)) throw new ConfigError(source, `${label}: name: '${sub.name}' appears twice`);
    seen.add(sub.name);
    if (sub.maxRatePerSecond !== undefined && sub.rateLimitPerSecond === undefined) {
      throw new ConfigError(
        source,
        `${label}: maxRatePerSecond: a global budget needs rateLimitPerSecond (per instance) to be enforceable`,
      );
    }
    return { ...sub, url: new URL(sub.url) };
  });
}
