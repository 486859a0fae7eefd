import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { SSMProvider } from '@aws-lambda-powertools/parameters/ssm';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Credential } from './endpoint';
import { ConfigError } from './errors';

/**
 * ENDPOINT_CREDENTIALS: comma-separated `<endpoint>=<kind>:<store>:<name>` entries, e.g.
 * `analytics=bearer:ssm:/ingest/prod/analytics-token,audit=hmac:secretsmanager:ingest/prod/audit-key`.
 * kind: `bearer` (sent as `Authorization: Bearer <value>`) or `hmac` (the body is signed into `X-Signature-256`);
 * store: `ssm` (a SecureString parameter, name or ARN) or `secretsmanager` (a secret's SecretString, name or ARN).
 * Endpoints without an entry are called without credentials.
 */
export const CREDENTIALS_VARIABLE = 'ENDPOINT_CREDENTIALS';
/** How long a fetched credential is reused before it is read again (so rotations arrive within this time). */
export const DEFAULT_CREDENTIALS_MAX_AGE_S = 300;

export type CredentialKind = Credential['kind'];
export type CredentialStore = 'ssm' | 'secretsmanager';

export interface CredentialRef {
  endpoint: string;
  kind: CredentialKind;
  store: CredentialStore;
  /** SSM parameter name or ARN, or Secrets Manager secret name or ARN. */
  name: string;
}

/** The parsed ENDPOINT_CREDENTIALS: at most one reference per endpoint. */
export type CredentialSpec = readonly CredentialRef[];

const KINDS: readonly CredentialKind[] = ['bearer', 'hmac'];
const STORES: readonly CredentialStore[] = ['ssm', 'secretsmanager'];
const SSM_NAME = /^\/?[A-Za-z0-9_.\-/]{1,2048}$/;
const SSM_ARN = /^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter\/[A-Za-z0-9_.\-/]+$/;
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const EXAMPLE = "e.g. 'analytics=bearer:ssm:/ingest/prod/analytics-token'";

function checkName(store: CredentialStore, name: string): string | undefined {
  if (store === 'ssm') {
    return SSM_NAME.test(name) || SSM_ARN.test(name)
      ? undefined
      : 'is not an SSM parameter name (letters, digits and _ . - /) or parameter ARN';
  }
  return SECRET_NAME.test(name) || SECRET_ARN.test(name)
    ? undefined
    : 'is not a Secrets Manager secret name (letters, digits and / _ + = . @ -) or secret ARN';
}

/** Parses ENDPOINT_CREDENTIALS; throws ConfigError naming the variable and the bad entry. */
export function parseCredentialSpec(value: string | undefined, endpointNames: string[]): CredentialSpec {
  if (!value?.trim()) return [];
  const known = new Set(endpointNames);
  const seen = new Set<string>();
  const refs: CredentialRef[] = [];
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    if (eq <= 0) {
      throw new ConfigError(CREDENTIALS_VARIABLE, `'${entry}' is not <endpoint>=<kind>:<store>:<name>, ${EXAMPLE}`);
    }
    const endpoint = entry.slice(0, eq).trim();
    if (!known.has(endpoint)) {
      const names = endpointNames.length ? endpointNames.join(', ') : 'none';
      throw new ConfigError(
        CREDENTIALS_VARIABLE,
        `'${entry}' names endpoint '${endpoint}', which is not in ENDPOINTS (${names}): fix the name or add the endpoint`,
      );
    }
    if (seen.has(endpoint)) {
      throw new ConfigError(
        CREDENTIALS_VARIABLE,
        `endpoint '${endpoint}' has two entries: keep one credential per endpoint`,
      );
    }
    seen.add(endpoint);
    // Split on the first two colons only: ARNs contain colons.
    const rest = entry.slice(eq + 1).trim();
    const first = rest.indexOf(':');
    const second = first < 0 ? -1 : rest.indexOf(':', first + 1);
    if (second < 0) {
      throw new ConfigError(CREDENTIALS_VARIABLE, `'${entry}' is not <endpoint>=<kind>:<store>:<name>, ${EXAMPLE}`);
    }
    const kind = rest.slice(0, first).trim();
    const store = rest.slice(first + 1, second).trim();
    const name = rest.slice(second + 1).trim();
    if (!KINDS.includes(kind as CredentialKind)) {
      throw new ConfigError(CREDENTIALS_VARIABLE, `'${entry}' has kind '${kind}': use 'bearer' or 'hmac'`);
    }
    if (!STORES.includes(store as CredentialStore)) {
      throw new ConfigError(CREDENTIALS_VARIABLE, `'${entry}' has store '${store}': use 'ssm' or 'secretsmanager'`);
    }
    const problem = checkName(store as CredentialStore, name);
    if (problem) throw new ConfigError(CREDENTIALS_VARIABLE, `'${entry}': '${name}' ${problem}`);
    refs.push({ endpoint, kind: kind as CredentialKind, store: store as CredentialStore, name });
  }
  return refs;
}

/** A credential could not be read; the message names the endpoint, the store and the parameter, never a value. */
export class CredentialError extends Error {
  override readonly name = 'CredentialError';
  constructor(
    readonly ref: CredentialRef,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Every endpoint's credential (cached for maxAgeS); `refresh` reads one again, bypassing the cache. */
export interface CredentialSource {
  (): Promise<ReadonlyMap<string, Credential>>;
  refresh(endpoint: string): Promise<Credential | undefined>;
}

export interface CredentialSourceOptions {
  /** Seconds a fetched credential is reused (default 300). */
  maxAgeS?: number;
  /** Clients to use instead of the defaults (tests point them at a local server). */
  ssmClient?: SSMClient;
  secretsClient?: SecretsManagerClient;
}

// Fail fast at cold start rather than hang until the function's timeout when the store does not answer.
const CLIENT_DEFAULTS = { maxAttempts: 3, requestHandler: { connectionTimeout: 1_000, requestTimeout: 3_000 } };

function sdkErrorName(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  return cause instanceof Error ? cause.name : 'UnknownError';
}

function describeRef(ref: CredentialRef): string {
  const what = ref.kind === 'bearer' ? 'bearer token' : 'HMAC secret';
  const where = ref.store === 'ssm' ? `SSM parameter '${ref.name}'` : `Secrets Manager secret '${ref.name}'`;
  return `the ${what} of endpoint '${ref.endpoint}' (${where})`;
}

function readError(ref: CredentialRef, error: unknown): CredentialError {
  const code = sdkErrorName(error);
  let fix: string;
  if (code === 'ParameterNotFound' || code === 'ResourceNotFoundException' || code === 'ParameterNotFoundError') {
    fix =
      ref.store === 'ssm'
        ? 'create it as a SecureString parameter in this account and region, or fix ENDPOINT_CREDENTIALS'
        : 'create the secret (a SecretString) in this account and region, or fix ENDPOINT_CREDENTIALS';
  } else if (code === 'AccessDeniedException' || code === 'AccessDenied') {
    fix =
      'the function role may not read it: redeploy (the policy is generated from ENDPOINT_CREDENTIALS) and, for a ' +
      'customer-managed KMS key, set the credentialsKmsKeyArn stage param';
  } else {
    fix = 'the store did not answer as expected; the next invocation tries again';
  }
  return new CredentialError(ref, `${CREDENTIALS_VARIABLE}: cannot read ${describeRef(ref)}: ${code}: ${fix}`, {
    cause: error,
  });
}

// Non-enumerable, so JSON.stringify (the logger) and util.inspect never print the value.
function toCredential(kind: CredentialKind, value: string): Credential {
  const credential = { kind } as Credential;
  Object.defineProperty(credential, kind === 'bearer' ? 'token' : 'secret', { value, enumerable: false });
  return credential;
}

/**
 * Returns a function that resolves every endpoint's credential through Powertools Parameters, cached for `maxAgeS`.
 * Call it once at cold start (a missing credential then stops the function with a CredentialError) and again per
 * invocation: within the cache age it makes no call.
 */
export function createCredentialSource(spec: CredentialSpec, options: CredentialSourceOptions = {}): CredentialSource {
  const maxAge = options.maxAgeS ?? DEFAULT_CREDENTIALS_MAX_AGE_S;
  let ssm: SSMProvider | undefined;
  let secrets: SecretsProvider | undefined;
  const ssmProvider = () => {
    ssm ??= new SSMProvider({ awsSdkV3Client: options.ssmClient ?? new SSMClient(CLIENT_DEFAULTS) });
    return ssm;
  };
  const secretsProvider = () => {
    secrets ??= new SecretsProvider({
      awsSdkV3Client: options.secretsClient ?? new SecretsManagerClient(CLIENT_DEFAULTS),
    });
    return secrets;
  };

  const read = async (ref: CredentialRef, forceFetch = false): Promise<[string, Credential]> => {
    let value: unknown;
    try {
      value =
        ref.store === 'ssm'
          ? await ssmProvider().get(ref.name, { decrypt: true, maxAge, forceFetch })
          : await secretsProvider().get(ref.name, { maxAge, forceFetch });
    } catch (error) {
      throw readError(ref, error);
    }
    if (typeof value !== 'string') {
      const fix = value === undefined ? 'it has no value' : 'it is binary: store the credential as a string';
      throw new CredentialError(ref, `${CREDENTIALS_VARIABLE}: cannot use ${describeRef(ref)}: ${fix}`);
    }
    const trimmed = value.trim();
    if (trimmed === '') {
      throw new CredentialError(ref, `${CREDENTIALS_VARIABLE}: ${describeRef(ref)} is empty: store the credential`);
    }
    return [ref.endpoint, toCredential(ref.kind, trimmed)];
  };

  const source = async () => new Map(await Promise.all(spec.map((ref) => read(ref))));
  // After a 401/403 the endpoint's credential is read again, bypassing (and then refreshing) the cache.
  const refresh = async (endpoint: string) => {
    const ref = spec.find((candidate) => candidate.endpoint === endpoint);
    return ref ? (await read(ref, true))[1] : undefined;
  };
  return Object.assign(source, { refresh });
}
