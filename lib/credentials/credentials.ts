import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { SSMProvider } from '@aws-lambda-powertools/parameters/ssm';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Credential } from '../delivery';
import {
  CREDENTIALS_VARIABLE,
  type CredentialKind,
  type CredentialRef,
  type CredentialSpec,
  type SecretRef,
  secretKey,
} from './credential-spec';

export {
  CREDENTIALS_VARIABLE,
  type CredentialKind,
  type CredentialRef,
  type CredentialSpec,
  type CredentialStore,
  checkSecretName,
  parseCredentialSpec,
  type SecretRef,
  secretKey,
} from './credential-spec';

/** How long a fetched credential is reused before it is read again (so rotations arrive within this time). */
export const DEFAULT_CREDENTIALS_MAX_AGE_S = 300;

/** A credential could not be read; the message names the endpoint, the store and the parameter, never a value. */
export class CredentialError extends Error {
  override readonly name = 'CredentialError';
  constructor(
    readonly ref: CredentialRef | SecretRef,
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

/** The endpoints file's secrets by `secretKey`; `refresh` reads one endpoint's again, bypassing the cache. */
export interface SecretSource {
  (): Promise<ReadonlyMap<string, string>>;
  refresh(endpoint: string): Promise<ReadonlyMap<string, string>>;
}

export interface CredentialSourceOptions {
  /** Seconds a fetched credential is reused (default 300). */
  maxAgeS?: number;
  /** Clients to use instead of the defaults (tests point them at a local server). */
  ssmClient?: SSMClient;
  secretsClient?: SecretsManagerClient;
}

// Fail fast at cold start rather than hang until the function's timeout when the store does not answer; without
// throwOnRequestTimeout the SDK's request timeout only logs a warning.
export const CLIENT_DEFAULTS = {
  maxAttempts: 3,
  requestHandler: { connectionTimeout: 1_000, requestTimeout: 3_000, throwOnRequestTimeout: true },
};

function sdkErrorName(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  return cause instanceof Error ? cause.name : 'UnknownError';
}

/** The setting that names the reference: ENDPOINT_CREDENTIALS or the endpoints file. */
function origin(ref: CredentialRef | SecretRef): string {
  return 'field' in ref ? 'endpoints file' : CREDENTIALS_VARIABLE;
}

function describeRef(ref: CredentialRef | SecretRef): string {
  const what = 'field' in ref ? ref.field : ref.kind === 'bearer' ? 'bearer token' : 'HMAC secret';
  const where = ref.store === 'ssm' ? `SSM parameter '${ref.name}'` : `Secrets Manager secret '${ref.name}'`;
  return `the ${what} of endpoint '${ref.endpoint}' (${where})`;
}

function readError(ref: CredentialRef | SecretRef, error: unknown): CredentialError {
  const code = sdkErrorName(error);
  let fix: string;
  if (code === 'ParameterNotFound' || code === 'ResourceNotFoundException' || code === 'ParameterNotFoundError') {
    fix =
      ref.store === 'ssm'
        ? `create it as a SecureString parameter in this account and region, or fix ${origin(ref)}`
        : `create the secret (a SecretString) in this account and region, or fix ${origin(ref)}`;
  } else if (code === 'AccessDeniedException' || code === 'AccessDenied') {
    fix =
      `the function role may not read it: redeploy (the policy is generated from ${origin(ref)}) and, for a ` +
      'customer-managed KMS key, set the credentialsKmsKeyArn stage param';
  } else {
    fix = 'the store did not answer as expected; the next invocation tries again';
  }
  return new CredentialError(ref, `${origin(ref)}: cannot read ${describeRef(ref)}: ${code}: ${fix}`, {
    cause: error,
  });
}

// Non-enumerable, so JSON.stringify (the logger) and util.inspect never print the value.
function toCredential(kind: CredentialKind, value: string): Credential {
  const credential = { kind } as Credential;
  Object.defineProperty(credential, kind === 'bearer' ? 'token' : 'secret', { value, enumerable: false });
  return credential;
}

/** Reads secrets through Powertools Parameters (cached `maxAge` s); throws a CredentialError naming the reference. */
function createReader(options: CredentialSourceOptions) {
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
  return async (ref: CredentialRef | SecretRef, forceFetch = false): Promise<string> => {
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
      throw new CredentialError(ref, `${origin(ref)}: cannot use ${describeRef(ref)}: ${fix}`);
    }
    const trimmed = value.trim();
    if (trimmed === '') {
      throw new CredentialError(ref, `${origin(ref)}: ${describeRef(ref)} is empty: store the credential`);
    }
    return trimmed;
  };
}

/**
 * Returns a function that resolves every endpoint's credential through Powertools Parameters, cached for `maxAgeS`.
 * Call it once at cold start (a missing credential then stops the function with a CredentialError) and again per
 * invocation: within the cache age it makes no call.
 */
export function createCredentialSource(spec: CredentialSpec, options: CredentialSourceOptions = {}): CredentialSource {
  const read = createReader(options);
  const source = async () =>
    new Map(
      await Promise.all(
        spec.map(async (ref): Promise<[string, Credential]> => [ref.endpoint, toCredential(ref.kind, await read(ref))]),
      ),
    );
  // After a 401/403 the endpoint's credential is read again, bypassing (and then refreshing) the cache.
  const refresh = async (endpoint: string) => {
    const ref = spec.find((candidate) => candidate.endpoint === endpoint);
    return ref ? toCredential(ref.kind, await read(ref, true)) : undefined;
  };
  return Object.assign(source, { refresh });
}

/**
 * The same for the secrets an endpoints file references (auth and signing): resolves a map from `secretKey(ref)` to
 * the value. A secret referenced by several endpoints is read once.
 */
export function createSecretSource(refs: readonly SecretRef[], options: CredentialSourceOptions = {}): SecretSource {
  const read = createReader(options);
  const unique = [...new Map(refs.map((ref) => [secretKey(ref), ref])).values()];
  const readAll = async (which: readonly SecretRef[], forceFetch: boolean) =>
    new Map(
      await Promise.all(
        which.map(async (ref): Promise<[string, string]> => [secretKey(ref), await read(ref, forceFetch)]),
      ),
    );
  // After a 401/403 the endpoint's secrets are read again, bypassing (and then refreshing) the cache.
  const refresh = (endpoint: string) =>
    readAll(
      unique.filter((ref) => refs.some((r) => r.endpoint === endpoint && secretKey(r) === secretKey(ref))),
      true,
    );
  return Object.assign(() => readAll(unique, false), { refresh });
}
