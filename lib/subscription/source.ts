import { readFileSync } from 'node:fs';
import type { EndpointsDocument } from '../config/config';
import { CREDENTIALS_VARIABLE, type CredentialSpec, type SecretRef } from '../credentials/credential-spec';
import { ConfigError } from '../errors';
import { refKey, secretRefsOf } from './request';
import type { EndpointConfig } from './schema';
import { standardWebhooksKey } from './signing';

export const ENDPOINTS_FILE_VARIABLE = 'ENDPOINTS_FILE';

/**
 * The endpoints document the function runs with: the one bundled into the artifact at `npm run package` (`bundled`,
 * its JSON text), else the JSON file ENDPOINTS_FILE names (local runs), else none (ENDPOINTS is used).
 */
export function endpointsDocument(
  env: Record<string, string | undefined>,
  bundled: string | undefined,
): EndpointsDocument | undefined {
  if (bundled) return { document: JSON.parse(bundled), source: 'endpoints file (bundled)' };
  const path = env[ENDPOINTS_FILE_VARIABLE]?.trim();
  if (!path) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(ENDPOINTS_FILE_VARIABLE, `cannot read '${path}': ${(error as Error).message}`);
  }
  try {
    return { document: JSON.parse(text), source: path };
  } catch (error) {
    throw new ConfigError(
      ENDPOINTS_FILE_VARIABLE,
      `'${path}' is not JSON (${(error as Error).message}): the function reads the JSON form; ` +
        'npm start/demo --endpoints and npm run package convert the YAML file',
    );
  }
}

/** Every secret reference of the endpoints, for createSecretSource and the IAM policy. */
export function secretRefs(endpoints: readonly EndpointConfig[]): SecretRef[] {
  return endpoints.flatMap((endpoint) =>
    secretRefsOf(endpoint).map(({ field, ref }) =>
      'ssm' in ref
        ? { endpoint: endpoint.name, field, store: 'ssm' as const, name: ref.ssm }
        : { endpoint: endpoint.name, field, store: 'secretsmanager' as const, name: ref.secretsmanager },
    ),
  );
}

/** An endpoint authenticated (or signed) twice, by ENDPOINT_CREDENTIALS and by its endpoints file, is refused. */
export function checkCredentialOverlap(spec: CredentialSpec, endpoints: readonly EndpointConfig[]): void {
  for (const ref of spec) {
    const endpoint = endpoints.find((e) => e.name === ref.endpoint);
    const other = ref.kind === 'bearer' ? endpoint?.auth : endpoint?.signing;
    if (other) {
      const field = ref.kind === 'bearer' ? 'auth' : 'signing';
      throw new ConfigError(
        CREDENTIALS_VARIABLE,
        `endpoint '${ref.endpoint}' also has ${field} in the endpoints file: keep one (the file's ${field} is preferred)`,
      );
    }
  }
}

/** Decodes every Standard Webhooks secret once, so a malformed one stops the cold start instead of every delivery. */
export function checkSigningSecrets(endpoints: readonly EndpointConfig[], secrets: ReadonlyMap<string, string>): void {
  for (const endpoint of endpoints) {
    if (endpoint.signing?.scheme !== 'standard-webhooks') continue;
    for (const [i, ref] of endpoint.signing.secrets.entries()) {
      const where = `endpoint '${endpoint.name}' signing.secrets[${i}] (${refKey(ref)})`;
      standardWebhooksKey(secrets.get(refKey(ref)) ?? '', where);
    }
  }
}
