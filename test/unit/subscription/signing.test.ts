import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { SigningSecretError, standardWebhooksHeaders, standardWebhooksKey } from '../../../lib/subscription/signing';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

describe('Standard Webhooks signing', () => {
  it('matches the reference implementation byte for byte', () => {
    const body = Buffer.from('{"id":"e-1","data":"Zoë"}');
    const timestamp = new Date('2026-11-26T12:00:00Z');
    const reference = new Webhook(SECRET).sign('msg_1', timestamp, body.toString('utf8'));
    const ours = standardWebhooksHeaders('msg_1', timestamp.getTime() / 1000, body, [
      standardWebhooksKey(SECRET, 'test'),
    ]);
    expect(ours).toEqual({ 'webhook-id': 'msg_1', 'webhook-timestamp': '1795694400', 'webhook-signature': reference });
  });

  it('accepts a secret with or without the whsec_ prefix; refuses one that is not base64 key material', () => {
    expect(standardWebhooksKey(SECRET.slice(6), 'x').equals(standardWebhooksKey(SECRET, 'x'))).toBe(true);
    expect(() => standardWebhooksKey('hunter2', "endpoint 'audit' signing.secrets[0]")).toThrow(SigningSecretError);
    // The name is what a log line's error field starts with (errorText).
    expect(() => standardWebhooksKey('hunter2', 'x')).toThrow(expect.objectContaining({ name: 'SigningSecretError' }));
    // The message names where the secret comes from and never repeats it.
    expect(() => standardWebhooksKey('whsec_not base64!!', "endpoint 'audit' signing.secrets[0]")).toThrow(
      new SigningSecretError(
        "endpoint 'audit' signing.secrets[0] is not a Standard Webhooks secret: store 'whsec_' followed by the " +
          'base64 of 24 to 64 random bytes',
      ),
    );
  });

  it('takes a key of 16 bytes or more, refuses 15 (the edge of the minimum)', () => {
    const secret = (bytes: number) => `whsec_${Buffer.alloc(bytes, 7).toString('base64')}`;
    expect(() => standardWebhooksKey(secret(15), 'x')).toThrow(SigningSecretError);
    expect(standardWebhooksKey(secret(16), 'x')).toEqual(Buffer.alloc(16, 7));
    expect(standardWebhooksKey(secret(17), 'x')).toEqual(Buffer.alloc(17, 7));
  });

  it('refuses valid base64 with junk before or after it (the whole secret must be base64)', () => {
    const encoded = SECRET.slice(6);
    for (const bad of [`${encoded}!!`, `!!${encoded}`, `${encoded} junk`, `whsec_ ${encoded}`, `${encoded}\n`]) {
      expect(() => standardWebhooksKey(bad, 'x'), JSON.stringify(bad)).toThrow(SigningSecretError);
    }
  });

  it('why binary mode is refused with it: the reference library verifies only UTF-8 JSON bodies', () => {
    const key = standardWebhooksKey(SECRET, 'x');
    const now = Math.floor(Date.now() / 1000);
    const verify = (body: Buffer, options?: { jsonParse: boolean }) =>
      new Webhook(SECRET).verify(body, standardWebhooksHeaders('msg_1', now, body, [key]), options);
    // The data of a binary-mode request: JSON verifies; bytes never do (decoded as UTF-8 before the HMAC).
    expect(verify(Buffer.from('{"n":1}'))).toEqual({ n: 1 });
    expect(() => verify(Buffer.from([0x00, 0xff, 0xfe, 0x80]))).toThrow('No matching signature found');
    // Text verifies, then the default JSON parse throws: a receiver using the defaults answers an error.
    expect(() => verify(Buffer.from('héllo'))).toThrow(SyntaxError);
    expect(verify(Buffer.from('héllo'), { jsonParse: false })).toBeUndefined();
  });
});
