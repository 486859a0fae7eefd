// The stage's endpoints and credentials, checked with the function's own parsers (lib/, loaded by tsx).

import { fail } from './errors.js';

export async function importTs(path) {
  // tsx (a dev dependency, like the framework itself) loads the TypeScript sources of lib/ as they are.
  const { tsImport } = await import('tsx/esm/api');
  return tsImport(path, import.meta.url);
}

/**
 * The stage's endpoints (ENDPOINTS or the endpoints file) and credentials, checked with the function's own parsers as
 * deployed: plain http to a loopback host is refused (in Lambda, 127.0.0.1 is the Runtime API).
 */
export async function checkEndpoints(stage, env, file) {
  const [{ loadConfig }, { parseCredentialSpec }, { readEndpointsFile }, source] = await Promise.all([
    importTs('../../lib/config/config.ts'),
    importTs('../../lib/credentials/credentials.ts'),
    importTs('../endpoints-file.ts'),
    importTs('../../lib/subscription/source.ts'),
  ]);
  try {
    const endpointsFile = file ? readEndpointsFile(file) : undefined;
    const config = loadConfig(env, endpointsFile ? { document: endpointsFile.document, source: file } : undefined, {
      deployed: true,
    });
    const spec = parseCredentialSpec(
      env.ENDPOINT_CREDENTIALS,
      config.endpoints.map((e) => e.name),
    );
    source.checkCredentialOverlap(spec, config.endpoints);
    return { config, credentials: [...spec, ...source.secretRefs(config.endpoints)], endpointsFile };
  } catch (error) {
    fail(stage, error instanceof Error ? error.message : String(error));
  }
}
