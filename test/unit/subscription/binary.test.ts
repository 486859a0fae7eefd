import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { binaryMessage, percentEncode } from '../../../lib/subscription/binary';

describe('percentEncode (CloudEvents HTTP binding 1.0.2, 3.1.3.2)', () => {
  it('leaves printable ASCII other than space, double quote and percent as it is', () => {
    expect(percentEncode('com.example.order/created?x=1&y=[2]')).toBe('com.example.order/created?x=1&y=[2]');
    expect(percentEncode('a b"c%d')).toBe('a%20b%22c%25d');
    expect(percentEncode('Zoë ✓')).toBe('Zo%C3%AB%20%E2%9C%93');
  });

  it('always yields a valid header value that decodes back to the input (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (value) => {
        const encoded = percentEncode(value);
        return /^[\x21-\x7e]*$/.test(encoded) && decodeURIComponent(encoded) === value;
      }),
    );
  });
});

describe('binaryMessage', () => {
  const base = { specversion: '1.0' as const, id: 'e-1', source: 'urn:x', type: 't' };

  it('sends no body and no Content-Type for an event without data', () => {
    const message = binaryMessage(base);
    expect(message.body.length).toBe(0);
    expect(message.headers['content-type']).toBeUndefined();
    expect(message.headers).toMatchObject({ 'ce-id': 'e-1', 'ce-source': 'urn:x', 'ce-type': 't' });
  });

  it('sends JSON data as JSON, application/json when datacontenttype is absent (JSON format rule)', () => {
    const message = binaryMessage({ ...base, data: 'text' });
    expect(message.headers['content-type']).toBe('application/json');
    expect(message.body.toString()).toBe('"text"');
    expect(binaryMessage({ ...base, datacontenttype: 'application/vnd.x+json', data: 'text' }).body.toString()).toBe(
      '"text"',
    );
  });

  it('writes extension values of any scalar type as text, and no header for data or datacontenttype', () => {
    const message = binaryMessage({ ...base, datacontenttype: 'text/plain', data: 'x', count: 3, flag: false });
    expect(message.headers).toMatchObject({ 'ce-count': '3', 'ce-flag': 'false', 'content-type': 'text/plain' });
    expect(Object.keys(message.headers)).not.toContain('ce-data');
    expect(Object.keys(message.headers)).not.toContain('ce-datacontenttype');
  });
});
