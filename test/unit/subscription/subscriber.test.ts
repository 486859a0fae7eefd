import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { testEndpoint } from '../../support/endpoints';
import { subscriberFor, validEvent } from '../../support/subscriptions';

const context = () => ({ signal: new AbortController().signal, deadlineAt: Date.now() + 60_000 });

describe('Subscriber', () => {
  it('routes on the parsed event: its filter decides, the event body is not read again', () => {
    const sub = subscriberFor('https://sink.example.com/in', {
      filter: { type: { prefix: 'com.example.order.' }, extensions: { tenant: 'acme' } },
    });
    expect(sub.routes(validEvent('e-1', { tenant: 'acme' }))).toBe(true);
    expect(sub.routes(validEvent('e-2', { tenant: 'globex' }))).toBe(false);
    expect(sub.routes(validEvent('e-3', { tenant: 'acme', type: 'com.example.refund.issued' }))).toBe(false);
  });

  it("adds an ENDPOINT_CREDENTIALS credential to the file's static headers (short form and file together)", async () => {
    const sink = await testEndpoint();
    const event = validEvent();
    const result = await subscriberFor(sink.url, { headers: { 'X-Tenant': 'acme' } }).deliver(event, context(), {
      kind: 'hmac',
      secret: 'legacy',
    });
    expect(result).toMatchObject({ ok: true });
    const [request] = sink.received;
    expect(request?.headers['x-tenant']).toBe('acme');
    expect(request?.headers['x-signature-256']).toBe(
      `sha256=${createHmac('sha256', 'legacy').update(event.body).digest('hex')}`,
    );
  });

  it('on a 401/403 reads its secret references again and sends once more with the new value', async () => {
    const sink = await testEndpoint((request) => ({
      status: request.headers.authorization === 'Bearer new' ? 200 : 401,
    }));
    const secrets = new Map([['ssm:/token', 'old']]);
    let reads = 0;
    const result = await subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/token' } } }).deliver(
      validEvent(),
      {
        ...context(),
        secrets,
        refreshSecrets: async () => {
          reads++;
          secrets.set('ssm:/token', 'new');
          return true;
        },
      },
    );
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    expect(reads).toBe(1);
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer old', 'Bearer new']);
  });

  it('on a 401/403 whose secrets read again are unchanged, does not send again (CREDENTIALS_NOT_REFRESHED)', async () => {
    const sink = await testEndpoint(() => ({ status: 401 }));
    const secrets = new Map([['ssm:/token', 'old']]);
    const result = await subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/token' } } }).deliver(
      validEvent(),
      { ...context(), secrets, refreshSecrets: async () => false },
    );
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'CREDENTIALS_NOT_REFRESHED', attempts: 1 });
    expect(sink.received).toHaveLength(1);
  });

  it('on a 401/403 of an endpoint with no credentials at all, says so (CREDENTIALS_NONE)', async () => {
    const sink = await testEndpoint(() => ({ status: 403 }));
    const result = await subscriberFor(sink.url).deliver(validEvent(), context());
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'CREDENTIALS_NONE' });
    expect(sink.received).toHaveLength(1);
  });
});
