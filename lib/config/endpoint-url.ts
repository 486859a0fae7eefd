import { isIP } from 'node:net';

// Shared by lib/config/config.ts (ENDPOINTS, queue URLs) and lib/subscription/schema.ts (the endpoints file): its own module
// so that neither imports the other.

/** True for hosts that never leave this machine: 127.0.0.0/8, ::1 and `localhost` itself, all literally. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  // Not '*.localhost': such names are resolved through DNS, which may answer anything.
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '0:0:0:0:0:0:0:1';
}

/**
 * Query parameter names that carry secrets: token, secret, password/passwd/pwd, key (api_key, apikey, key...),
 * sig/signature, auth, credential, session; any case, anywhere in the name (docs/configuration.md, Endpoint URLs).
 */
export const SECRET_PARAM = /token|secret|passw|pwd|key|sig|auth|credential|session/i;

/**
 * An endpoint (or token) URL: absolute, https (plain http only for loopback hosts), no credentials in it. `shown` is
 * the URL as a message may show it (no password, no query string); absent when it must not be shown at all.
 */
export function parseEndpointUrl(raw: string): { url: URL } | { problem: string; shown?: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    const problem = /^[a-z][a-z\d+.-]*:\/\//i.test(raw)
      ? 'has no valid absolute URL'
      : 'has no valid absolute URL: it must start with https:// (add https:// in front of the host)';
    return { problem, shown: redact(raw) };
  }
  // Checked first so that no later message repeats a password.
  if (url.username || url.password) {
    return {
      problem: 'has credentials in its URL: use ENDPOINT_CREDENTIALS or a secret reference in the endpoints file',
    };
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return {
      problem: 'must use https; plain http is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost)',
      shown: withoutQuery(url),
    };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { problem: 'must be an https URL', shown: withoutQuery(url) };
  }
  const secretParam = [...url.searchParams.keys()].find((name) => SECRET_PARAM.test(name));
  if (secretParam !== undefined) {
    // Only the parameter's name: the value is the secret, and the rest of the URL may hold more of it.
    const name = /^[A-Za-z0-9_.-]{1,40}$/.test(secretParam) ? `'${secretParam}'` : '(name not shown)';
    return {
      problem:
        `has a query parameter named like a secret, ${name}: a URL is bundled into the artifact in clear and ` +
        'logged by proxies; send it as a header (auth kind apiKey or bearer with a secret reference in the endpoints ' +
        'file, or ENDPOINT_CREDENTIALS)',
    };
  }
  // undici sends the path and query only: a fragment would reach nobody but readers of the artifact.
  if (url.hash) {
    return {
      problem:
        'has a fragment (#…), which is never sent to the endpoint and would be bundled into the artifact in clear: ' +
        'remove it',
    };
  }
  return { url };
}

/** Hides user:password and the query string or fragment (tokens often ride there) of a URL-like string. */
export function redact(raw: string): string {
  return raw.replace(/\/\/[^/@]*@/, '//***@').replace(/[?#].*$/s, '?…');
}

/** The URL as an error message may show it: no query string or fragment. */
export function withoutQuery(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search || url.hash ? '?…' : ''}`;
}
