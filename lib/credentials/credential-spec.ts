import type { Credential } from '../delivery';
import { ConfigError } from '../errors';

// What ENDPOINT_CREDENTIALS and the endpoints file's references look like, without the SSM and Secrets Manager clients
// lib/credentials/credentials.ts loads: config and the endpoints file import only this, so those clients load only when used.

/**
 * ENDPOINT_CREDENTIALS: comma-separated `<endpoint>=<kind>:<store>:<name>` entries, e.g.
 * `analytics=bearer:ssm:/ingest/prod/analytics-token,audit=hmac:secretsmanager:ingest/prod/audit-key`.
 * kind: `bearer` (sent as `Authorization: Bearer <value>`) or `hmac` (the body is signed into `X-Signature-256`);
 * store: `ssm` (a SecureString parameter, name or ARN) or `secretsmanager` (a secret's SecretString, name or ARN).
 * Endpoints without an entry are called without credentials.
 */
export const CREDENTIALS_VARIABLE = 'ENDPOINT_CREDENTIALS';

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

/** Why `name` is not a parameter/secret name or ARN of `store`, or undefined when it is. */
export function checkSecretName(store: CredentialStore, name: string): string | undefined {
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
    const problem = checkSecretName(store as CredentialStore, name);
    if (problem) throw new ConfigError(CREDENTIALS_VARIABLE, `'${entry}': '${name}' ${problem}`);
    refs.push({ endpoint, kind: kind as CredentialKind, store: store as CredentialStore, name });
  }
  return refs;
}

/** A secret of an endpoint's subscription (auth or signing), by where it is stored. */
export interface SecretRef {
  endpoint: string;
  /** The field of the endpoints file that names it, e.g. 'auth.password' or 'signing.secrets[1]'. */
  field: string;
  store: CredentialStore;
  name: string;
}

/** The key of a secret's value in the map a secret source resolves. */
export function secretKey(ref: Pick<SecretRef, 'store' | 'name'>): string {
  return `${ref.store}:${ref.name}`;
}
