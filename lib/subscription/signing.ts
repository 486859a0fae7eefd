import { createHmac } from 'node:crypto';

const WHSEC = 'whsec_';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A Standard Webhooks secret is not usable; names where it comes from, never its value. */
export class SigningSecretError extends Error {
  override readonly name = 'SigningSecretError';
}

/** Decodes a Standard Webhooks secret ('whsec_' + base64 of 24 to 64 random bytes) into the HMAC key. */
export function standardWebhooksKey(secret: string, where: string): Buffer {
  const encoded = secret.startsWith(WHSEC) ? secret.slice(WHSEC.length) : secret;
  const key = BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : Buffer.alloc(0);
  if (key.length < 16) {
    throw new SigningSecretError(
      `${where} is not a Standard Webhooks secret: store 'whsec_' followed by the base64 of 24 to 64 random bytes`,
    );
  }
  return key;
}

/**
 * Standard Webhooks headers: `webhook-signature` holds one `v1,<base64 HMAC-SHA256 of id.timestamp.body>` per key,
 * space-separated, so that a receiver holding any of the active secrets accepts the request.
 */
export function standardWebhooksHeaders(
  id: string,
  timestampS: number,
  body: Buffer,
  keys: readonly Buffer[],
): Record<string, string> {
  const timestamp = String(timestampS);
  const signatures = keys.map(
    (key) => `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64')}`,
  );
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signatures.join(' ') };
}
