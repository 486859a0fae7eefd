import type { RequestSource } from '../delivery';
import { authHeaders, CONTENT_TYPE, type Credential, type PreparedRequest, USER_AGENT } from '../endpoint';
import type { ValidEvent } from '../event';
import { binaryMessage } from './binary';
import { ClientCredentialsToken } from './oauth';
import type { EndpointConfig, SecretRefValue } from './schema';
import { standardWebhooksHeaders, standardWebhooksKey } from './signing';

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
        ? binaryMessage(event.attributes)
        : { headers: { 'content-type': CONTENT_TYPE }, body: event.body };
    const { body } = message;
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
    let request: PreparedRequest = { headers: fixed, body };
    let lastToken: string | undefined;
    let rejectedToken: string | undefined;
    const refresh = this.#refresher(context, current !== undefined, async () => {
      const fresh = current && context.refreshCredential ? await context.refreshCredential(endpoint.name) : undefined;
      if (fresh) current = fresh;
      rejectedToken = lastToken;
      fixed = build();
      request = { headers: fixed, body };
      return fresh !== undefined;
    });
    // Without a signature or a token, every attempt sends the same request: built once (and again after a refresh).
    if (!endpoint.signing && !this.#oauth) return { prepare: () => request, ...(refresh ? { refresh } : {}) };
    return {
      ...(refresh ? { refresh } : {}),
      prepare: () => {
        const headers = endpoint.signing ? { ...fixed, ...this.#signature(event.key, body, context) } : fixed;
        if (!this.#oauth) return { headers, body };
        const token = this.#oauth.get(this.#secret(context, 'auth.clientSecret'), context.signal, rejectedToken);
        rejectedToken = undefined;
        const withToken = (value: string): PreparedRequest => {
          lastToken = value;
          return { headers: { ...headers, authorization: `Bearer ${value}` }, body };
        };
        return typeof token === 'string' ? withToken(token) : token.then(withToken);
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
    rebuild: () => Promise<boolean>,
  ): (() => Promise<boolean>) | undefined {
    const credential = hasCredential && context.refreshCredential !== undefined;
    const secrets = this.#refs.size > 0 && context.refreshSecrets !== undefined;
    if (!credential && !secrets && !this.#oauth) return undefined;
    return async () => {
      const secretsRenewed = secrets ? await context.refreshSecrets!(this.#endpoint.name) : false;
      const credentialRenewed = await rebuild();
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
        key = standardWebhooksKey(secret, `endpoint '${this.#endpoint.name}' ${field}`);
        // Rotations add keys over the instance's life; a few dozen at most.
        if (this.#keys.size >= 32) this.#keys.clear();
        this.#keys.set(secret, key);
      }
      return key;
    });
    return standardWebhooksHeaders(id, Math.floor(this.#now() / 1000), body, keys);
  }
}
