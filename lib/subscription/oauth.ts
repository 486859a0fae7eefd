/** The token endpoint did not give us a token; the message names the endpoint and the token URL, never a secret. */
export class OAuthTokenError extends Error {
  override readonly name = 'OAuthTokenError';
  constructor(
    readonly endpoint: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface ClientCredentialsOptions {
  endpoint: string;
  tokenUrl: URL;
  clientId: string;
  scope?: string;
  /** Bound on one token request. */
  timeoutMs: number;
  now?: () => number;
}

interface Cached {
  token: string;
  refreshAt: number;
  /** Fetched because the endpoint refused the one before: its refusal too means the client, not the token. */
  replacedRefused: boolean;
}

/** Tokens are renewed this long before they expire, or at 90% of a lifetime under 10 minutes: none expires in flight. */
const EARLY_MS = 60_000;
const DEFAULT_LIFETIME_S = 300;
/** After an old and a fresh token were both refused, no new token is asked for this long (the client is refused). */
const REFUSED_HOLD_MS = 60_000;
/** A failed token request is not repeated for the same secret this long: a down token endpoint gets no storm. */
const FAILED_HOLD_MS = 5_000;

/** Form-encodes one client credential for HTTP Basic, as RFC 6749 section 2.3.1 requires. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

/**
 * OAuth 2.0 client credentials grant (RFC 6749 section 4.4) for one endpoint: one token shared by every request,
 * fetched once at a time, reused until shortly before it expires, and renewed early when an endpoint refuses it.
 */
export class ClientCredentialsToken {
  readonly #options: ClientCredentialsOptions;
  readonly #now: () => number;
  #cached: Cached | undefined;
  #pending: Promise<string> | undefined;
  #replacingRefused = false;
  #refusedUntil = 0;
  #failure: { error: OAuthTokenError; until: number; clientSecret: string } | undefined;

  constructor(options: ClientCredentialsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * A valid access token. `rejected` is a token the endpoint answered 401 to: unless another request already
   * replaced it, it is dropped and a new one fetched (so a burst of 401s costs one token request). When the
   * replacement is refused too, the token is kept for REFUSED_HOLD_MS: a new one would be refused the same way.
   */
  get(clientSecret: string, signal: AbortSignal, rejected?: string): Promise<string> | string {
    const now = this.#now();
    if (rejected !== undefined && this.#cached?.token === rejected && now >= this.#refusedUntil) {
      if (this.#cached.replacedRefused) {
        // One more token may be tried after the hold.
        this.#refusedUntil = now + REFUSED_HOLD_MS;
        this.#cached.replacedRefused = false;
      } else {
        this.#cached = undefined;
        this.#replacingRefused = true;
      }
    }
    if (this.#cached && now < this.#cached.refreshAt) return this.#cached.token;
    const failure = this.#failure;
    if (failure && now < failure.until && failure.clientSecret === clientSecret) return Promise.reject(failure.error);
    this.#pending ??= this.#fetch(clientSecret, signal)
      .catch((error: unknown) => {
        // Cut by our own deadline is not the token endpoint failing: the next invocation asks again.
        if (error instanceof OAuthTokenError && !signal.aborted)
          this.#failure = { error, until: this.#now() + FAILED_HOLD_MS, clientSecret };
        throw error;
      })
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }

  async #fetch(clientSecret: string, signal: AbortSignal): Promise<string> {
    const { endpoint, tokenUrl, clientId, scope, timeoutMs } = this.#options;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (scope) form.set('scope', scope);
    const basic = Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64');
    const started = this.#now();
    let response: Response;
    try {
      response = await fetch(tokenUrl, {
        method: 'POST',
        headers: {
          authorization: `Basic ${basic}`,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: form.toString(),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        redirect: 'error',
      });
    } catch (error) {
      const reason = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.name) : '';
      throw new OAuthTokenError(
        endpoint,
        `OAuth token request to ${tokenUrl.origin}${tokenUrl.pathname} failed: ${reason}`,
      );
    }
    const where = `OAuth token endpoint ${tokenUrl.origin}${tokenUrl.pathname}`;
    if (!response.ok) {
      await response.body?.cancel();
      const fix =
        response.status === 400 || response.status === 401 ? ': check clientId, the client secret and scope' : '';
      throw new OAuthTokenError(endpoint, `${where} answered ${response.status}${fix}`, response.status);
    }
    const json = (await response.json().catch(() => undefined)) as
      | { access_token?: unknown; expires_in?: unknown; token_type?: unknown }
      | undefined;
    if (typeof json?.access_token !== 'string' || json.access_token === '') {
      throw new OAuthTokenError(endpoint, `${where} answered without an access_token`);
    }
    const lifetimeS = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : DEFAULT_LIFETIME_S;
    const lifetimeMs = lifetimeS * 1000;
    this.#cached = {
      token: json.access_token,
      refreshAt: started + Math.max(lifetimeMs - EARLY_MS, lifetimeMs * 0.9),
      replacedRefused: this.#replacingRefused,
    };
    this.#replacingRefused = false;
    this.#failure = undefined;
    return json.access_token;
  }
}
