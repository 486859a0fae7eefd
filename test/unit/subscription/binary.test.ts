import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { binaryMessage, isJsonContentType, percentEncode } from '../../../lib/subscription/binary';

describe('percentEncode (CloudEvents HTTP binding 1.0.2, 3.1.3.2)', () => {
  it('leaves printable ASCII other than space, double quote and percent as it is', () => {
    expect(percentEncode('com.example.order/created?x=1&y=[2]')).toBe('com.example.order/created?x=1&y=[2]');
    expect(percentEncode('a b"c%d')).toBe('a%20b%22c%25d');
    expect(percentEncode('Zoë ✓')).toBe('Zo%C3%AB%20%E2%9C%93');
    // Bytes below 0x10 keep two hex digits.
    expect(percentEncode('a\tb\u0001')).toBe('a%09b%01');
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

describe('isJsonContentType', () => {
  it('is application/json or application/<anything>+json, with or without parameters, and nothing else', () => {
    for (const type of [
      undefined,
      'application/json',
      'Application/JSON',
      'application/json ; charset=utf-8',
      'application/cloudevents+json',
    ]) {
      expect(isJsonContentType(type), String(type)).toBe(true);
    }
    for (const type of [
      'text/plain',
      'application/jsonx',
      'xapplication/json',
      'application/json-seq',
      'application/+json',
    ]) {
      expect(isJsonContentType(type), type).toBe(false);
    }
  });
});

describe('binaryMessage: null data and data_base64', () => {
  const base = { specversion: '1.0' as const, id: 'e-1', source: 'urn:x', type: 't' };

  it('an absent or null optional attribute or extension is no header at all', () => {
    const message = binaryMessage({ ...base, subject: undefined, time: null, tenant: null, region: undefined });
    expect(Object.keys(message.headers).sort()).toEqual(['ce-id', 'ce-source', 'ce-specversion', 'ce-type']);
  });

  it('non-string data of a non-JSON type is sent as JSON text (the JSON format carries it as a JSON value)', () => {
    expect(binaryMessage({ ...base, datacontenttype: 'text/plain', data: 42 }).body.toString()).toBe('42');
  });

  it('null data is no data: empty body and no Content-Type, not the JSON text null', () => {
    const body = '{"specversion":"1.0","id":"e-1","source":"urn:x","type":"t","data":null}';
    for (const message of [
      binaryMessage({ ...base, data: null }),
      binaryMessage(JSON.parse(body), Buffer.from(body)),
    ]) {
      expect(message.body.length).toBe(0);
      expect(message.headers['content-type']).toBeUndefined();
    }
  });

  it('data_base64 is the body, decoded, and never a ce-data_base64 header', () => {
    const bytes = Buffer.from([0, 1, 254, 255]);
    const message = binaryMessage({ ...base, datacontenttype: 'image/png', data_base64: bytes.toString('base64') });
    expect(message.body.equals(bytes)).toBe(true);
    expect(Object.keys(message.headers).sort()).toEqual([
      'ce-id',
      'ce-source',
      'ce-specversion',
      'ce-type',
      'content-type',
    ]);
  });
});

describe('binaryMessage with the event as received', () => {
  const head = '{"specversion":"1.0","id":"e-1","source":"urn:x","type":"t"';
  const send = (body: string) => binaryMessage(JSON.parse(body), Buffer.from(body, 'utf8')).body.toString('utf8');

  it('sends big integers and floats exactly as written', () => {
    expect(send(`${head},"data":{"n":12345678901234567890,"f":1.0,"e":1E400}}`)).toBe(
      '{"n":12345678901234567890,"f":1.0,"e":1E400}',
    );
    expect(send(`${head}, "data" : 12345678901234567890 , "x":"y"}`)).toBe('12345678901234567890');
  });

  it('takes the top-level data member, the last one when repeated, whatever the spacing and nesting', () => {
    expect(send(`{"data":{"data":[1,{"data":"}"}]},${head.slice(1)},"data" :\n[ 1.50 ,"\\"]"]\t}`)).toBe(
      '[ 1.50 ,"\\"]"]',
    );
    expect(send(`${head},"d\\u0061ta":7.0}`)).toBe('7.0');
    // Every JSON whitespace: space, tab, line feed, carriage return.
    expect(send(`${head},\r\n\t"data"\t:\r\n[1,\t2]\r\n}`)).toBe('[1,\t2]');
  });

  const number = fc.oneof(
    fc.bigInt().map(String),
    fc.integer().map((n) => `${n}.0`),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => n.toExponential()),
  );
  const data: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      number,
      fc.string().map((text) => JSON.stringify(text)),
      fc.array(tie('value')).map((items) => `[${items.join(' , ')}]`),
      fc
        .array(fc.tuple(fc.string(), tie('value')))
        .map((members) => `{${members.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
    ),
  })).value;

  it('the body is the exact bytes of data in the received event (property)', () => {
    fc.assert(
      fc.property(data, fc.constantFrom('', ' ', '\n  '), (text, space) => {
        expect(send(`${head},${space}"data"${space}:${space}${text}${space},"ext":"a"}`)).toBe(text);
      }),
    );
  });
});
