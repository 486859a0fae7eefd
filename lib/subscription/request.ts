import {
  authHeaders,
  CONTENT_TYPE,
  type Credential,
  type PreparedRequest,
  type RequestSource,
  USER_AGENT,
} from '../delivery';
import { DeliveryAttemptError } from '../errors';
import type { ValidEvent } from '../event';
import { binaryMessage } from './binary';
import { ClientCredentialsToken, OAuthAbortedError, OAuthTokenError } from './oauth';
import { type EndpointConfig, HEADER_VALUE, type SecretRefValue } from './schema';
import { SigningSecretError, standardWebhooksHeaders, standardWebhooksKey } from './signing';

/** What shaping a request needs beyond the event: this batch's secrets, their refresh, and the deadline's signal. */
export interface ShapeContext {
  signal: AbortSignal;
  /** Values of the endpoints file's secret references, by `secretKey` (this batch's copy). */
  secrets?: ReadonlyMap<string, string>;
  /**
   * After a 401/403: reads the endpoint's ENDPOINT_CREDENTIALS credential again, bypassing the cache; undefined when
   * there is nothing new (read again too recently, or the same value).
   */
  refreshCredential?: (endpoint: string) => Promise<Credential | undefined>;
  /** After a 401/403: reads the endpoint's secret references again into `secrets`; false when none changed. */
  refreshSecrets?: (endpoint: string) => Promise<boolean>;
}

/**
 * The request of an event to endpoints with nothing of their own (structured, no headers, auth or signature): fan-out
 * builds it once per event and shares it among them, as undici does not change it.
 */
export function plainSource(event: ValidEvent): RequestSource {
  const headers = { 'content-type': CONTENT_TYPE, 'idempotency-key': event.key, 'user-agent': USER_AGENT };
  const request: PreparedRequest = { headers, body: event.body };
  return { prepare: () => request };
}

/** The error code of a delivery whose OAuth token endpoint refused the client (400/401); settle.ts hints on it. */
export const OAUTH_TOKEN_REFUSED = 'OAUTH_TOKEN_REFUSED';

export function refKey(ref: SecretRefValue): string {
  return 'ssm' in ref ? `ssm:${ref.ssm}` : `secretsmanager:${ref.secretsmanager}`;
}

/** The secret references of one endpoint, with the field that names each (for errors and the IAM policy). */
export function secretRefsOf(endpoint: EndpointConfig): { field: string; ref: SecretRefValue }[] {
  const refs: { field: string; ref: SecretRefValue }[] = [];
  const { auth, signing } = endpoint;
  if (auth?.kind === 'bearer') refs.push({ field: 'auth.token', ref: auth.token });
  if (auth?.kind === 'basic') refs.push({ field: 'auth.password', ref: auth.password });
  if (auth?.kind === 'apiKey') refs.push({ field: 'auth.value', ref: auth.value });
  if (auth?.kind === 'oauth2-client-credentials') refs.push({ field: 'auth.clientSecret', ref: auth.clientSecret });
  if (signing?.scheme === 'standard-webhooks') {
    for (const [i, ref] of signing.secrets.entries()) refs.push({ field: `signing.secrets[${i}]`, ref });
  }
  if (signing?.scheme === 'x-signature-256') refs.push({ field: 'signing.secret', ref: signing.secret });
  return refs;
}

/**
 * A secret with a line break or another character HTTP refuses (say, a trailing newline in an SSM parameter) would make
 * every request throw before it is sent: that is our credentials being unusable, not the endpoint failing, so it is
 * 'unauthorized' (read again once, then backed off, never quarantined, breaker untouched). The value is never shown.
 */
function unsendable(endpoint: string, headers: Record<string, string>): DeliveryAttemptError | undefined {
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_VALUE.test(value)) {
      const message = `the value of header '${name}' has a character HTTP does not allow (a line break in a secret?): fix the secret`;
      return new DeliveryAttemptError('unauthorized', endpoint, message, undefined, `INVALID_HEADER_VALUE ${name}`);
    }
  }
  return undefined;
}

/**
 * A token endpoint answering 400/401 (invalid_client, typically after the client secret was rotated) is a refusal of
 * our credentials: the delivery then reads the secrets again and retries once, and the endpoint's breaker is untouched.
 * Its status is the token endpoint's, not the delivery endpoint's: it is in the error code, never in `status` (the
 * by-status query would read a 400 there as the endpoint blaming the event). A deadline cutting the token request off
 * is `aborted`, like any attempt the deadline cuts.
 */
function tokenFailure(error: unknown): never {
  if (error instanceof OAuthAbortedError) {
    throw new DeliveryAttemptError('aborted', error.endpoint, error.message);
  }
  if (error instanceof OAuthTokenError && (error.status === 400 || error.status === 401)) {
    // The message (token URL, status, error code, what to check) is the failure's error field: the log line shows it.
    const code = `${OAUTH_TOKEN_REFUSED}: ${error.message}`;
    throw new DeliveryAttemptError('unauthorized', error.endpoint, error.message, undefined, code);
  }
  throw error;
}

/**
 * Shapes the requests of one endpoint: content mode, static headers, auth and signatures. The body is built once
 * per event; headers once per attempt (a Standard Webhooks timestamp is the time of sending).
 */
export class RequestShaper {
  readonly #endpoint: EndpointConfig;
  readonly #now: () => number;
  readonly #oauth: ClientCredentialsToken | undefined;
  // Decoding a whsec_ secret per request would cost more than the HMAC.
  readonly #keys = new Map<string, Buffer>();
  readonly #refs: ReadonlyMap<string, string>;
  /** Nothing of its own to add: without a credential, plainSource(event) is its request. */
  readonly plain: boolean;

  constructor(endpoint: EndpointConfig, options: { timeoutMs: number; now?: () => number }) {
    this.#endpoint = endpoint;
    this.#now = options.now ?? Date.now;
    this.#refs = new Map(secretRefsOf(endpoint).map(({ field, ref }) => [field, refKey(ref)]));
    this.plain =
      endpoint.contentMode !== 'binary' &&
      !endpoint.auth &&
      !endpoint.signing &&
      Object.keys(endpoint.headers ?? {}).length === 0;
    const { auth } = endpoint;
    if (auth?.kind === 'oauth2-client-credentials') {
      this.#oauth = new ClientCredentialsToken({
        endpoint: endpoint.name,
        tokenUrl: new URL(auth.tokenUrl),
        clientId: auth.clientId,
        ...(auth.clientAuth ? { clientAuth: auth.clientAuth } : {}),
        timeoutMs: options.timeoutMs,
        ...(auth.scope ? { scope: auth.scope } : {}),
        ...(options.now ? { now: options.now } : {}),
      });
    }
  }

  /** The request source of one event for EndpointDelivery. */
  source(event: ValidEvent, context: ShapeContext, credential?: Credential): RequestSource {
    if (this.plain && !credential) return plainSource(event);
    const endpoint = this.#endpoint;
    const message =
      endpoint.contentMode === 'binary'
        ? binaryMessage(event.attributes, event.body)
        : { headers: { 'content-type': CONTENT_TYPE }, body: event.body };
    const { body } = message;
    // Binary mode's ce- headers are the event's: a 431 blames the event (quarantined), not the endpoint.
    const eventHeaders = endpoint.contentMode === 'binary';
    const make = (headers: Record<string, string>): PreparedRequest => ({ headers, body, eventHeaders });
    let current = credential;
    const build = (): Record<string, string> => ({
      ...endpoint.headers,
      ...message.headers,
      'idempotency-key': event.key,
      'user-agent': USER_AGENT,
      ...authHeaders(current, body),
      ...this.#staticAuth(context),
    });
    let fixed = build();
    let problem = unsendable(endpoint.name, fixed);
    let request = make(fixed);
    let lastToken: string | undefined;
    let rejectedToken: string | undefined;
    const refresh = this.#refresher(context, current !== undefined, async (status) => {
      const fresh = current && context.refreshCredential ? await context.refreshCredential(endpoint.name) : undefined;
      if (fresh) current = fresh;
      // 403 is the token's scope or the client's permission: a new token of the same client would be refused too.
      if (status !== 403) rejectedToken = lastToken;
      fixed = build();
      problem = unsendable(endpoint.name, fixed);
      request = make(fixed);
      return fresh !== undefined;
    });
    // Without a signature or a token, every attempt sends the same request: built once (and again after a refresh).
    const checked = () => {
      if (problem) throw problem;
    };
    if (!endpoint.signing && !this.#oauth) {
      return {
        prepare: () => {
          checked();
          return request;
        },
        ...(refresh ? { refresh } : {}),
      };
    }
    return {
      ...(refresh ? { refresh } : {}),
      prepare: () => {
        // Signed when the request is ready to go: after any wait for a token, so the timestamp is the sending time.
        checked();
        const signed = () => (endpoint.signing ? { ...fixed, ...this.#signature(event.key, body, context) } : fixed);
        if (!this.#oauth) return make(signed());
        const token = this.#oauth.get(this.#secret(context, 'auth.clientSecret'), context.signal, rejectedToken);
        rejectedToken = undefined;
        const withToken = (value: string): PreparedRequest => {
          const bad = unsendable(endpoint.name, { authorization: value });
          if (bad) throw bad;
          lastToken = value;
          return make({ ...signed(), authorization: `Bearer ${value}` });
        };
        return typeof token === 'string' ? withToken(token) : token.then(withToken, tokenFailure);
      },
    };
  }

  /**
   * How this request renews its credentials after a 401/403, or undefined when it has none that could change. The
   * renewal resolves whether anything is new to retry with: a new OAuth token always is.
   */
  #refresher(
    context: ShapeContext,
    hasCredential: boolean,
    rebuild: (status?: number) => Promise<boolean>,
  ): ((status?: number) => Promise<boolean>) | undefined {
    const credential = hasCredential && context.refreshCredential !== undefined;
    const secrets = this.#refs.size > 0 && context.refreshSecrets !== undefined;
    if (!credential && !secrets && !this.#oauth) return undefined;
    return async (status) => {
      const secretsRenewed = secrets ? await context.refreshSecrets!(this.#endpoint.name) : false;
      const credentialRenewed = await rebuild(status);
      return secretsRenewed || credentialRenewed || this.#oauth !== undefined;
    };
  }

  #secret(context: ShapeContext, field: string): string {
    const key = this.#refs.get(field);
    const value = key === undefined ? undefined : context.secrets?.get(key);
    // The secret source reads every reference at cold start, so a miss is a wiring bug, not a user error.
    if (value === undefined) throw new Error(`endpoint '${this.#endpoint.name}': ${field} was not read at cold start`);
    return value;
  }

  #staticAuth(context: ShapeContext): Record<string, string> {
    const { auth } = this.#endpoint;
    switch (auth?.kind) {
      case 'bearer':
        return { authorization: `Bearer ${this.#secret(context, 'auth.token')}` };
      case 'basic': {
        const pair = `${auth.username}:${this.#secret(context, 'auth.password')}`;
        return { authorization: `Basic ${Buffer.from(pair, 'utf8').toString('base64')}` };
      }
      case 'apiKey':
        return { [auth.header.toLowerCase()]: this.#secret(context, 'auth.value') };
      default:
        return {};
    }
  }

  /**
   * A secret rotated to a malformed value is our configuration's trouble, like a line break in a secret: 'unauthorized'
   * (read again once, then backed off, breaker untouched), with a code naming the reference, never the value.
   */
  #signingKey(secret: string, field: string): Buffer {
    const name = this.#endpoint.name;
    try {
      return standardWebhooksKey(secret, `endpoint '${name}' ${field} (${this.#refs.get(field)})`);
    } catch (error) {
      if (!(error instanceof SigningSecretError)) throw error;
      const code = `SIGNING_SECRET_INVALID ${field} (${this.#refs.get(field)})`;
      throw new DeliveryAttemptError('unauthorized', name, error.message, undefined, code);
    }
  }

  #signature(id: string, body: Buffer, context: ShapeContext): Record<string, string> {
    const { signing } = this.#endpoint;
    if (signing?.scheme === 'x-signature-256') {
      return authHeaders({ kind: 'hmac', secret: this.#secret(context, 'signing.secret') }, body);
    }
    if (signing?.scheme !== 'standard-webhooks') return {};
    const keys = signing.secrets.map((_, i) => {
      const field = `signing.secrets[${i}]`;
      const secret = this.#secret(context, field);
      let key = this.#keys.get(secret);
      if (!key) {
        key = this.#signingKey(secret, field);
        // Rotations add keys over the instance's life; a few dozen at most.
        if (this.#keys.size >= 32) this.#keys.clear();
        this.#keys.set(secret, key);
      }
      return key;
    });
    return standardWebhooksHeaders(id, Math.floor(this.#now() / 1000), body, keys);
  }
}
