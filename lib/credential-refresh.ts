import type { Credential } from './endpoint';

/** How long after one read of an endpoint's credential (after a 401/403) the next may go to SSM/Secrets Manager. */
export const CREDENTIAL_REFRESH_INTERVAL_MS = 30_000;

export type RefreshCredential = (endpoint: string) => Promise<Credential | undefined>;

/**
 * Reads an endpoint's credential again for a caller that was refused with `current`; resolves undefined when there is
 * nothing new to retry with (the read in this interval returned the same value, or failed).
 */
export type LimitedRefresh = (endpoint: string, current: Credential | undefined) => Promise<Credential | undefined>;

const sameCredential = (a: Credential | undefined, b: Credential | undefined): boolean =>
  a === b ||
  (a !== undefined &&
    b !== undefined &&
    (a.kind === 'bearer' ? b.kind === 'bearer' && a.token === b.token : b.kind === 'hmac' && a.secret === b.secret));

/**
 * One read per endpoint per interval for the whole warm instance, shared by every batch: a revoked credential must not
 * make every batch on every instance re-read the store (SSM throttles per account) and POST every record twice.
 */
export function limitCredentialRefresh(
  refresh: RefreshCredential,
  intervalMs = CREDENTIAL_REFRESH_INTERVAL_MS,
  now: () => number = Date.now,
): LimitedRefresh {
  const last = new Map<string, { at: number; read: Promise<Credential | undefined> }>();
  return async (endpoint, current) => {
    const previous = last.get(endpoint);
    if (previous && now() - previous.at < intervalMs) {
      const credential = await previous.read.catch(() => undefined);
      return sameCredential(credential, current) ? undefined : credential;
    }
    const read = refresh(endpoint);
    last.set(endpoint, { at: now(), read });
    const credential = await read;
    return sameCredential(credential, current) ? undefined : credential;
  };
}
