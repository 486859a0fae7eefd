// The stage's endpoints and credentials, checked with the function's own parsers (lib/).

import { loadConfig } from '../../lib/config/config';
import { parseCredentialSpec } from '../../lib/credentials/credentials';
import { checkCredentialOverlap, secretRefs } from '../../lib/subscription/source';
import { readEndpointsFile } from '../endpoints-file';
import { fail } from './errors';

/**
 * The stage's endpoints (ENDPOINTS or the endpoints file) and credentials, checked with the function's own parsers as
 * deployed: plain http to a loopback host is refused (in Lambda, 127.0.0.1 is the Runtime API).
 */
export function checkEndpoints(stage: string, env: Record<string, string>, file: string | undefined) {
  try {
    const endpointsFile = file ? readEndpointsFile(file) : undefined;
    const document = file && endpointsFile ? { document: endpointsFile.document, source: file } : undefined;
    const config = loadConfig(env, document, { deployed: true });
    const spec = parseCredentialSpec(
      env.ENDPOINT_CREDENTIALS,
      config.endpoints.map((e) => e.name),
    );
    checkCredentialOverlap(spec, config.endpoints);
    return { config, credentials: [...spec, ...secretRefs(config.endpoints)], endpointsFile };
  } catch (error) {
    return fail(stage, error instanceof Error ? error.message : String(error));
  }
}
