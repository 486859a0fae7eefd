import { HEADER_VALUE } from './schema';

/** The token endpoint did not give us a token; the message names the endpoint and the token URL, never a secret. */
export class OAuthTokenError extends Error {
  override readonly name = 'OAuthTokenError';
  constructor(
    readonly endpoint: string,
    message: string,
    /** The token endpoint's HTTP status (not the delivery endpoint's), when it answered with an error. */
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The invocation's deadline cut the token request off: not a failure of the token endpoint, and never held. */
export class OAuthAbortedError extends Error {
  override readonly name = 'OAuthAbortedError';
  constructor(readonly endpoint: string) {
    super('the invocation deadline was reached while asking for an OAuth token');
  }
}

/** How the client authenticates to the token endpoint (RFC 6749 section 2.3.1): HTTP Basic, or in the form. */
export type ClientAuth = 'basic' | 'post';

export interface ClientCredentialsOptions {
  endpoint: string;
  tokenUrl: URL;
  clientId: string;
  scope?: string;
  /** `basic` (client_secret_basic, the default) or `post` (client_secret_post). */
  clientAuth?: ClientAuth;
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
/** RFC 6749 section 5.1 leaves expires_in optional: without it a token is kept this long. */
const DEFAULT_LIFETIME_S = 300;
/** After an old and a fresh token were both refused, no new token is asked for this long (the client is refused). */
const REFUSED_HOLD_MS = 60_000;
/** A failed token request is not repeated for the same secret this long: a down token endpoint gets no storm. */
const FAILED_HOLD_MS = 5_000;
/** RFC 6749 section 5.2 error codes are printable ASCII without '"' and '\': anything else is not shown. */
const ERROR_CODE = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

/** A token answer is a few hundred bytes: a larger body (a tokenUrl serving something else) is not kept in memory. */
const MAX_ANSWER_BYTES = 64 * 1024;
const TOO_LARGE = Symbol('too large');
const TOO_LARGE_TEXT = `more than ${MAX_ANSWER_BYTES} bytes: not a token answer (check tokenUrl)`;

/** The body parsed as JSON, undefined when it is not JSON, TOO_LARGE past MAX_ANSWER_BYTES (the rest is not read). */
async function readAnswer(response: Response): Promise<unknown> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Leaving the loop early cancels the stream: the connection is dropped, not drained.
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > MAX_ANSWER_BYTES) return TOO_LARGE;
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Form-encodes one client credential for HTTP Basic, as RFC 6749 section 2.3.1 requires. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

/**
 * A token's lifetime in seconds from `expires_in` (RFC 6749 section 5.1: 1*DIGIT; some servers send it as a string);
 * absent means the default, 0 means use it now and keep it for nothing; undefined when it is not a lifetime at all.
 */
export function lifetimeSeconds(expiresIn: unknown): number | undefined {
  if (expiresIn === undefined || expiresIn === null) return DEFAULT_LIFETIME_S;
  const value = typeof expiresIn === 'string' && /^\d{1,10}$/.test(expiresIn) ? Number(expiresIn) : expiresIn;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
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
        if (error instanceof OAuthTokenError)
          this.#failure = { error, until: this.#now() + FAILED_HOLD_MS, clientSecret };
        throw error;
      })
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }

  async #fetch(clientSecret: string, signal: AbortSignal): Promise<string> {
    const { endpoint, tokenUrl, timeoutMs } = this.#options;
    const where = `OAuth token endpoint ${tokenUrl.origin}${tokenUrl.pathname}`;
    const started = this.#now();
    // Its own bound besides the deadline: a token endpoint that never answers must not hold every delivery.
    const timeout = AbortSignal.timeout(timeoutMs);
    let json: { access_token?: unknown; expires_in?: unknown; token_type?: unknown };
    try {
      const response = await fetch(tokenUrl, {
        method: 'POST',
        ...this.#credentials(clientSecret),
        signal: AbortSignal.any([signal, timeout]),
        redirect: 'error',
      });
      if (!response.ok) throw await this.#refusal(response, where);
      const body = await readAnswer(response).catch((error: unknown) => {
        // Cut off while reading: a timeout or the deadline, not a body that is not JSON.
        if (signal.aborted || timeout.aborted) throw error;
        return undefined;
      });
      if (body === TOO_LARGE) throw new OAuthTokenError(endpoint, `${where} answered ${TOO_LARGE_TEXT}`);
      json = (body ?? {}) as typeof json;
    } catch (error) {
      if (signal.aborted) throw new OAuthAbortedError(endpoint);
      if (error instanceof OAuthTokenError) throw error;
      // fetch rejects with TypeError('fetch failed') and the reason (ECONNREFUSED, a redirect...) as its cause.
      const reason = timeout.aborted
        ? `no answer within ${timeoutMs} ms`
        : error instanceof Error && error.cause instanceof Error
          ? error.cause.message
          : String(error);
      throw new OAuthTokenError(
        endpoint,
        `OAuth token request to ${tokenUrl.origin}${tokenUrl.pathname} failed: ${reason}`,
      );
    }
    const token = json.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new OAuthTokenError(endpoint, `${where} answered without an access_token`);
    }
    // Checked before it is kept: a token with a line break would fail every delivery for its whole lifetime.
    if (!HEADER_VALUE.test(token)) {
      throw new OAuthTokenError(
        endpoint,
        `${where} answered an access_token that cannot be sent in an Authorization header`,
      );
    }
    // RFC 6750: only a Bearer token can be sent as 'Authorization: Bearer'; the type is case-insensitive (RFC 6749 5.1).
    const type = json.token_type;
    if (typeof type !== 'string' || type.toLowerCase() !== 'bearer') {
      const shown = JSON.stringify(type ?? null).slice(0, 40);
      throw new OAuthTokenError(endpoint, `${where} answered token_type ${shown}: only Bearer tokens are supported`);
    }
    const lifetimeS = lifetimeSeconds(json.expires_in);
    if (lifetimeS === undefined) {
      throw new OAuthTokenError(endpoint, `${where} answered an expires_in that is not a number of seconds`);
    }
    const lifetimeMs = lifetimeS * 1000;
    this.#cached = {
      token,
      // A lifetime of 0 gives refreshAt = started: the token serves the requests that waited for it, no later one.
      refreshAt: started + Math.max(lifetimeMs - EARLY_MS, lifetimeMs * 0.9),
      replacedRefused: this.#replacingRefused,
    };
    this.#replacingRefused = false;
    this.#failure = undefined;
    return token;
  }

  /** The client's credentials, in the Authorization header (client_secret_basic) or the form (client_secret_post). */
  #credentials(clientSecret: string): { headers: Record<string, string>; body: string } {
    const { clientId, scope, clientAuth } = this.#options;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (scope) form.set('scope', scope);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (clientAuth === 'post') {
      form.set('client_id', clientId);
      form.set('client_secret', clientSecret);
    } else {
      headers.authorization = `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64')}`;
    }
    return { headers, body: form.toString() };
  }

  /**
   * An error answer: its status and RFC 6749 error code (e.g. 400 invalid_client), with what to check: invalid_client
   * is also the answer to an authentication method the server does not take (RFC 6749 5.2), hence clientAuth.
   */
  async #refusal(response: Response, where: string): Promise<OAuthTokenError> {
    const body = (await readAnswer(response).catch(() => undefined)) as { error?: unknown } | undefined;
    const code = typeof body?.error === 'string' && ERROR_CODE.test(body.error) ? ` ${body.error}` : '';
    const fix =
      response.status === 400 || response.status === 401
        ? ': check clientId, the client secret, scope and clientAuth (basic or post)'
        : '';
    return new OAuthTokenError(
      this.#options.endpoint,
      `${where} answered ${response.status}${code}${fix}`,
      response.status,
    );
  }
}
