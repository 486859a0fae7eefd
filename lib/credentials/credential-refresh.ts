import type { Credential } from '../delivery';

/** How long after one read of an endpoint's credential (after a 401/403) the next may go to SSM/Secrets Manager. */
export const CREDENTIAL_REFRESH_INTERVAL_MS = 30_000;

export type RefreshCredential = (endpoint: string) => Promise<Credential | undefined>;

/**
 * Reads an endpoint's credential again for a caller that was refused with `current`; resolves undefined when there is
 * nothing new to retry with (the read in this interval returned the same value, or failed).
 */
export type LimitedRefresh = (endpoint: string, current: Credential | undefined) => Promise<Credential | undefined>;

/** The same for the endpoints file's secrets: the values read, or undefined when none differs from `current`. */
export type LimitedSecretsRefresh = (
  endpoint: string,
  current: ReadonlyMap<string, string>,
) => Promise<ReadonlyMap<string, string> | undefined>;

const sameCredential = (a: Credential | undefined, b: Credential | undefined): boolean =>
  a === b ||
  (a !== undefined &&
    b !== undefined &&
    (a.kind === 'bearer' ? b.kind === 'bearer' && a.token === b.token : b.kind === 'hmac' && a.secret === b.secret));

const sameSecrets = (fresh: ReadonlyMap<string, string> | undefined, current: ReadonlyMap<string, string>): boolean =>
  fresh === undefined || [...fresh].every(([key, value]) => current.get(key) === value);

/**
 * One read per endpoint per interval for the whole warm instance, shared by every batch: a revoked credential must not
 * make every batch on every instance re-read the store (SSM throttles per account) and POST every record twice.
 */
function limitRefresh<T, C>(
  refresh: (endpoint: string) => Promise<T | undefined>,
  same: (fresh: T | undefined, current: C) => boolean,
  intervalMs: number,
  now: () => number,
): (endpoint: string, current: C) => Promise<T | undefined> {
  const last = new Map<string, { at: number; read: Promise<T | undefined> }>();
  return async (endpoint, current) => {
    const previous = last.get(endpoint);
    if (previous && now() - previous.at < intervalMs) {
      const value = await previous.read.catch(() => undefined);
      return same(value, current) ? undefined : value;
    }
    const read = refresh(endpoint);
    last.set(endpoint, { at: now(), read });
    const value = await read;
    return same(value, current) ? undefined : value;
  };
}

export function limitCredentialRefresh(
  refresh: RefreshCredential,
  intervalMs = CREDENTIAL_REFRESH_INTERVAL_MS,
  now: () => number = Date.now,
): LimitedRefresh {
  return limitRefresh(refresh, sameCredential, intervalMs, now);
}

export function limitSecretsRefresh(
  refresh: (endpoint: string) => Promise<ReadonlyMap<string, string>>,
  intervalMs = CREDENTIAL_REFRESH_INTERVAL_MS,
  now: () => number = Date.now,
): LimitedSecretsRefresh {
  return limitRefresh(refresh, sameSecrets, intervalMs, now);
}
