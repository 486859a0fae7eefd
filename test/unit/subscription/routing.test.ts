import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CloudEvent } from '../../../lib/event/event';
import { compileFilter } from '../../../lib/subscription/routing';
import type { Filter } from '../../../lib/subscription/schema';

const event = (extra: Partial<CloudEvent> & Record<string, unknown> = {}): CloudEvent => ({
  specversion: '1.0',
  id: 'e-1',
  source: 'urn:shop:eu',
  type: 'com.example.order.created',
  ...extra,
});

describe('compileFilter', () => {
  it('without a filter, routes every event', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (type, source) => {
        expect(compileFilter(undefined)(event({ type, source }))).toBe(true);
      }),
    );
  });

  it('type and source: exact or prefix, several values meaning any', () => {
    const route = compileFilter({
      type: ['com.example.customer.updated', { prefix: 'com.example.order.' }],
      source: { prefix: 'urn:shop:' },
    });
    expect(route(event())).toBe(true);
    expect(route(event({ type: 'com.example.customer.updated' }))).toBe(true);
    expect(route(event({ type: 'com.example.customer.created' }))).toBe(false);
    expect(route(event({ source: 'urn:warehouse:1' }))).toBe(false);
  });

  it('several prefixes: matching any one of them is enough', () => {
    const route = compileFilter({ type: [{ prefix: 'com.example.order.' }, { prefix: 'com.example.refund.' }] });
    expect(route(event({ type: 'com.example.order.created' }))).toBe(true);
    expect(route(event({ type: 'com.example.refund.issued' }))).toBe(true);
    expect(route(event({ type: 'com.example.customer.updated' }))).toBe(false);
  });

  it('subject by prefix; an event without a subject does not match a subject filter', () => {
    const route = compileFilter({ subject: { prefix: 'orders/' } });
    expect(route(event({ subject: 'orders/7' }))).toBe(true);
    expect(route(event({ subject: 'refunds/7' }))).toBe(false);
    expect(route(event())).toBe(false);
  });

  it('a null subject (valid in JSON, treated as absent) does not match and does not throw', () => {
    const filters: Filter['subject'][] = [{ prefix: 'orders/' }, 'orders/7', [{ prefix: '' }]];
    for (const filter of filters) {
      expect(compileFilter({ subject: filter })(event({ subject: null }))).toBe(false);
    }
  });

  it("an absent or null extension never matches, not even a filter value of the text 'null' or 'undefined'", () => {
    const route = compileFilter({ extensions: { tenant: ['null', 'undefined'] } });
    expect(route(event())).toBe(false);
    expect(route(event({ tenant: null }))).toBe(false);
    expect(route(event({ tenant: undefined }))).toBe(false);
    expect(route(event({ tenant: 'null' }))).toBe(true);
  });

  it('extensions exactly, compared as text', () => {
    const route = compileFilter({ extensions: { tenant: ['acme', 'globex'], priority: '1' } });
    expect(route(event({ tenant: 'acme', priority: 1 }))).toBe(true);
    expect(route(event({ tenant: 'globex', priority: '1' }))).toBe(true);
    expect(route(event({ tenant: 'initech', priority: 1 }))).toBe(false);
    expect(route(event({ tenant: 'acme' }))).toBe(false);
  });

  it('an extension named like an Object.prototype member matches only the event attribute', () => {
    const route = compileFilter({ extensions: { constructor: 'function Object() { [native code] }' } });
    expect(route(event())).toBe(false);
    expect(route(event({ constructor: 'function Object() { [native code] }' }))).toBe(true);
  });

  it('a prefix filter matches exactly the events whose type starts with it (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }),
        fc.string(),
        (prefix, type) => compileFilter({ type: { prefix } })(event({ type })) === type.startsWith(prefix),
      ),
    );
  });
});
