import { describe, expect, it, vi } from 'vitest';
import type { DeliveryResult, EndpointDelivery, RequestSource } from '../../../lib/delivery/delivery';
import { authHeaders, type Credential } from '../../../lib/delivery/endpoint';
import { settleUnauthorized } from '../../../lib/delivery/refresh';
import { DeliveryAttemptError } from '../../../lib/errors';
import { deliver, deliveryFor, eventBody, later, never } from '../../support/delivery';
import { testEndpoint } from '../../support/endpoints';

describe('EndpointDelivery on 401/403 (issue 9, defect 4)', () => {
  const stale = { kind: 'bearer', token: 'stale' } as const;
  /** A request whose credential `refresh` renews, as lib/subscription/request.ts builds it. */
  const withCredential = (credential: Credential, renew: () => Promise<Credential | undefined>): RequestSource => {
    const { body, key } = eventBody('evt-1');
    let current: Credential | undefined = credential;
    return {
      prepare: () => ({ headers: { 'idempotency-key': key, ...authHeaders(current, body) }, body }),
      refresh: async () => {
        const fresh = await renew();
        if (fresh) current = fresh;
        return fresh !== undefined;
      },
    };
  };

  it('refreshes the credential once and retries at once; still refused, it fails unauthorized', async () => {
    const sink = await testEndpoint(() => ({ status: 403 }));
    let refreshes = 0;
    const refresh = async () => {
      refreshes++;
      return { kind: 'bearer', token: 'fresh' } as const;
    };
    const delivery = deliveryFor(sink.url, { maxAttempts: 5 });
    const result = await delivery.deliver(withCredential(stale, refresh), never, later());
    expect(result).toEqual({
      ok: false,
      endpoint: 'sink',
      kind: 'unauthorized',
      status: 403,
      error: 'CREDENTIALS_REFUSED',
      attempts: 2,
    });
    expect(refreshes).toBe(1);
    expect(sink.received.map((request) => request.headers.authorization)).toEqual(['Bearer stale', 'Bearer fresh']);
  });

  it('a refresh that fails ends the delivery as unauthorized, saying why', async () => {
    const sink = await testEndpoint(() => ({ status: 401 }));
    const request = withCredential(stale, async () => {
      throw new Error('ENDPOINT_CREDENTIALS: cannot read the bearer token');
    });
    const result = await deliveryFor(sink.url).deliver(request, never, later());
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', status: 401, attempts: 1 });
    expect(result.ok === false && result.error).toContain('CREDENTIALS_REFRESH_FAILED: ENDPOINT_CREDENTIALS');
    expect(sink.received).toHaveLength(1);
  });

  it('other 4xx are not retried and do not open the breaker', async () => {
    const sink = await testEndpoint(() => ({ status: 404 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 5, breakerThreshold: 1 });
    for (const id of ['a', 'b', 'c']) {
      expect(await deliver(delivery, id)).toMatchObject({ kind: 'endpoint-error', status: 404, attempts: 1 });
    }
    expect(sink.received).toHaveLength(3);
  });
});

describe('EndpointDelivery credential refresh and the deadline (issue 9, mutation testing)', () => {
  /** A request with a stale bearer token whose refresh the test settles by hand. */
  function refreshedByHand() {
    const { body, key } = eventBody('evt-1');
    let token = 'stale';
    let settle!: { renew: () => void; fail: () => void };
    const refreshing = new Promise<boolean>((resolve, reject) => {
      settle = {
        renew: () => {
          token = 'fresh';
          resolve(true);
        },
        fail: () => reject(new Error('ENDPOINT_CREDENTIALS: cannot read the bearer token')),
      };
    });
    let markAsked!: () => void;
    const asked = new Promise<void>((resolve) => {
      markAsked = resolve;
    });
    const request: RequestSource = {
      prepare: () => ({ headers: { 'idempotency-key': key, authorization: `Bearer ${token}` }, body }),
      refresh: () => {
        markAsked();
        return refreshing;
      },
    };
    return { request, settle, refreshing, asked };
  }

  /** Submits one delivery and records every call of its callback (there must be exactly one). */
  function submitted(delivery: EndpointDelivery, request: RequestSource, signal: AbortSignal) {
    const calls: DeliveryResult[] = [];
    const first = new Promise<DeliveryResult>((resolve) => {
      delivery.submit(request, signal, later(), (result) => {
        calls.push(result);
        resolve(result);
      });
    });
    return { calls, first };
  }

  for (const outcome of ['renew', 'fail'] as const) {
    it(`the deadline during a refresh ends the delivery once, and a late refresh (${outcome}) sends nothing`, async () => {
      const sink = await testEndpoint(() => ({ status: 401 }));
      const delivery = deliveryFor(sink.url, { maxConnections: 1 });
      const { request, settle, refreshing, asked } = refreshedByHand();
      const controller = new AbortController();
      const { calls, first } = submitted(delivery, request, controller.signal);
      // The deadline comes while the refresh after the 401 runs.
      await asked;
      controller.abort();
      expect(await first).toEqual({
        ok: false,
        endpoint: 'sink',
        kind: 'unauthorized',
        status: 401,
        error: 'CREDENTIALS_REFUSED',
        attempts: 1,
      });
      settle[outcome]();
      await refreshing.catch(() => undefined);
      // A later delivery through the same lane is answered: anything the late refresh queued would have gone first.
      sink.respond(() => ({ status: 200 }));
      expect(await deliver(delivery, 'after')).toMatchObject({ ok: true });
      expect(calls).toHaveLength(1);
      expect(sink.received.map((received) => received.headers.authorization ?? received.eventId)).toEqual([
        'Bearer stale',
        'after',
      ]);
    });
  }

  it('refreshes credentials only on 401/403: a 503 is retried with the same credential', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    let refreshes = 0;
    const { body } = eventBody('evt-1');
    const request: RequestSource = {
      prepare: () => ({ headers: { authorization: 'Bearer same' }, body }),
      refresh: async () => {
        refreshes++;
        return true;
      },
    };
    const result = await deliveryFor(sink.url, { maxAttempts: 2 }).deliver(request, never, later());
    expect(result).toMatchObject({ ok: false, kind: 'transient', status: 503, attempts: 2 });
    expect(refreshes).toBe(0);
  });
});

describe('settleUnauthorized', () => {
  const job = (request: RequestSource, refreshed = false) => {
    const results: DeliveryResult[] = [];
    const resolve = (result: DeliveryResult): void => {
      results.push(result);
    };
    return {
      job: { request, signal: never, deadlineAt: later(), refreshed, attempt: 1, trialsSeen: 0, resolve },
      results,
    };
  };
  // As Endpoint reports a 401, and as request.ts reports a header it cannot send (nothing was sent).
  const refused = new DeliveryAttemptError('unauthorized', 'sink', 'answered 401', 401, 'CREDENTIALS_REFUSED');
  const unsendable = new DeliveryAttemptError('unauthorized', 'sink', 'bad value', undefined, 'INVALID_HEADER_VALUE x');
  const request: RequestSource = { prepare: () => ({ headers: {}, body: Buffer.alloc(0) }), refresh: async () => true };

  it('leaves other failures, and a refusal after the refresh, to the retry policy', () => {
    const requeue = vi.fn();
    const transient = job(request);
    expect(
      settleUnauthorized(
        transient.job,
        new DeliveryAttemptError('transient', 'sink', 'HTTP 503', 503),
        'sink',
        requeue,
      ),
    ).toBe(false);
    expect(settleUnauthorized(transient.job, new Error('cannot sign'), 'sink', requeue)).toBe(false);
    const again = job(request, true);
    expect(settleUnauthorized(again.job, refused, 'sink', requeue)).toBe(false);
    expect([...transient.results, ...again.results]).toEqual([]);
    expect(requeue).not.toHaveBeenCalled();
  });

  it('without a credential to renew, fails at once with CREDENTIALS_NONE, or its own code if nothing was sent', () => {
    const none = job({ prepare: request.prepare });
    expect(settleUnauthorized(none.job, refused, 'sink', vi.fn())).toBe(true);
    expect(settleUnauthorized(none.job, unsendable, 'sink', vi.fn())).toBe(true);
    expect(none.results).toEqual([
      { ok: false, endpoint: 'sink', kind: 'unauthorized', status: 401, error: 'CREDENTIALS_NONE', attempts: 1 },
      { ok: false, endpoint: 'sink', kind: 'unauthorized', error: 'INVALID_HEADER_VALUE x', attempts: 1 },
    ]);
  });

  it('a refresh with nothing new fails with CREDENTIALS_NOT_REFRESHED, or its own code if nothing was sent', async () => {
    const stale: RequestSource = { prepare: request.prepare, refresh: async () => false };
    const results = await Promise.all(
      [refused, unsendable].map(
        (error) =>
          new Promise<DeliveryResult>((resolve) => {
            const { job: pending } = job(stale);
            pending.resolve = resolve;
            settleUnauthorized(pending, error, 'sink', vi.fn());
          }),
      ),
    );
    expect(results).toEqual([
      {
        ok: false,
        endpoint: 'sink',
        kind: 'unauthorized',
        status: 401,
        error: 'CREDENTIALS_NOT_REFRESHED',
        attempts: 1,
      },
      { ok: false, endpoint: 'sink', kind: 'unauthorized', error: 'INVALID_HEADER_VALUE x', attempts: 1 },
    ]);
  });

  it('renews the credential once and requeues the job for its next attempt', async () => {
    const renewing = job(request);
    const requeued = new Promise((resolve) => {
      expect(settleUnauthorized(renewing.job, refused, 'sink', resolve)).toBe(true);
    });
    expect(await requeued).toMatchObject({ refreshed: true, attempt: 2 });
    expect(renewing.results).toEqual([]);
  });
});
