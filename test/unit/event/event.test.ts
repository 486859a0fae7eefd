import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import {
  CloudEventSchema,
  eventIdOf,
  type InvalidEvent,
  idempotencyKey,
  parseEvent,
  plainlyValid,
  type ValidEvent,
} from '../../../lib/event/event';
import { binaryMessage } from '../../../lib/subscription/binary';
import { cloudEvent } from '../../support/events';

const MAX = 1_048_576;
const minimal = { specversion: '1.0', id: 'evt-1', source: 'urn:test:orders', type: 'com.example.order.created' };

function valid(body: string, maxBytes = MAX): ValidEvent {
  const result = parseEvent(body, maxBytes);
  if (!result.ok) throw new Error(`expected a valid event, got ${result.reason}: ${result.detail}`);
  return result;
}

function invalid(body: string | undefined, maxBytes = MAX): InvalidEvent {
  const result = parseEvent(body, maxBytes);
  if (result.ok) throw new Error(`expected an invalid event, got ok for ${body}`);
  return result;
}

/** The body of a minimal event with `changes` applied; `undefined` removes an attribute. */
function withAttributes(changes: Record<string, unknown>): string {
  const event: Record<string, unknown> = { ...minimal, ...changes };
  for (const [name, value] of Object.entries(changes)) if (value === undefined) delete event[name];
  return JSON.stringify(event);
}

describe('parseEvent: valid CloudEvents', () => {
  it('accepts the minimal event and derives the key from source and id', () => {
    const event = valid(JSON.stringify(minimal));
    expect(event).toMatchObject({
      ok: true,
      id: 'evt-1',
      source: 'urn:test:orders',
      type: 'com.example.order.created',
    });
    expect(event.key).toBe(idempotencyKey('urn:test:orders', 'evt-1'));
  });

  it('accepts every optional attribute', () => {
    valid(
      withAttributes({
        subject: 'order/42',
        time: '2026-11-25T10:00:00.123+01:00',
        datacontenttype: 'application/json',
        dataschema: 'https://schemas.example.com/order-created.json',
        data: { orderId: 42, lines: [1, 2, 3] },
      }),
    );
    valid(JSON.stringify(cloudEvent('from-helper')));
    valid(withAttributes({ time: '2026-11-25T10:00:00Z', data: null }));
    valid(withAttributes({ data: 'plain text', datacontenttype: 'text/plain' }));
    for (const type of ['text/plain; charset="utf-8"', 'application/vnd.x+json;v=1', 'multipart/mixed ;a=b; c="\\""']) {
      valid(withAttributes({ data: 'x', datacontenttype: type }));
    }
  });

  it('accepts extension attributes with scalar values', () => {
    const event = valid(
      withAttributes({
        traceparent: '00-abc-def-01',
        partitionkey: 'p1',
        sequence: 7,
        sampled: true,
        comexampleext: null,
      }),
    );
    expect(event.id).toBe('evt-1');
  });

  it('accepts data_base64', () => {
    valid(withAttributes({ data_base64: Buffer.from('binary \u0000 payload').toString('base64') }));
  });

  it('keeps the body bytes exactly as received: order, whitespace, escapes and non-ASCII', () => {
    const body = `{ "type":"t",\n  "specversion" : "1.0", "id":"é-1", "source":"urn:ß", "data":{"emoji":"🚀","esc":"\\u00e9"} }`;
    const event = valid(body);
    expect(event.body.equals(Buffer.from(body, 'utf8'))).toBe(true);
    expect(event.id).toBe('é-1');
  });

  it('accepts a body of exactly MAX_EVENT_BYTES', () => {
    const body = JSON.stringify(minimal);
    expect(valid(body, Buffer.byteLength(body)).body.length).toBe(Buffer.byteLength(body));
  });
});

describe('parseEvent: invalid records and their reasons', () => {
  it('empty body', () => {
    expect(invalid('')).toMatchObject({ reason: 'empty-body' });
    expect(invalid(undefined)).toMatchObject({ reason: 'empty-body' });
  });

  it('too large, counted in bytes rather than characters', () => {
    const body = withAttributes({ data: 'é'.repeat(50) });
    const result = invalid(body, body.length);
    expect(result.reason).toBe('too-large');
    expect(result.detail).toContain(`${Buffer.byteLength(body)} bytes`);
    expect(result.detail).toContain('MAX_EVENT_BYTES');
  });

  it('not JSON', () => {
    for (const body of ['{', 'hello', '{"id": 1,}', "{'single': 'quotes'}"]) {
      expect(invalid(body).reason).toBe('not-json');
    }
  });

  it('not JSON: the detail names the position and kind of error, never a byte of the body (issue 9, defect 7)', () => {
    const cases: Array<[string, string]> = [
      ['password=hunter2', 'unexpected character at position 0'],
      ['{"password":"hunter2",}', 'at position 22'],
      ['{"password":tru}', 'unexpected character at position 15'],
      ['{"password":"hunter2"', 'at position 21 (of 21 characters)'],
      ['{"password":"hunt', 'unterminated string at position 17'],
      ['{"password":"hunter2"} secret', 'more content after the JSON value at position 23'],
      ['{"password":"hunter2\u0001"}', 'control character in a string'],
    ];
    for (const [body, expected] of cases) {
      const result = invalid(body);
      expect(result.reason).toBe('not-json');
      expect(result.detail).toContain(expected);
      expect(result.detail).not.toMatch(/hunter|passw|secret|tru/);
    }
  });

  it('the kind of a not-JSON error is not read from the quoted body (review finding 10)', () => {
    for (const body of ['hello number', 'x minus sign', `${'y'.repeat(60)} exponent ${'z'.repeat(60)}`]) {
      expect(invalid(body).detail).toMatch(/^the body is not JSON: unexpected character at/);
    }
  });

  it('a large body V8 gives no position for is parsed once, the position not searched (review finding 1)', () => {
    const body = `{"a":${'x'.repeat(256 * 1024)}}`;
    const parse = vi.spyOn(JSON, 'parse');
    onTestFinished(() => parse.mockRestore());
    const result = invalid(body);
    expect(parse).toHaveBeenCalledTimes(1);
    expect(result.detail).toBe(
      `the body is not JSON: unexpected character at an unreported position (of ${body.length} characters)`,
    );
  });

  it('null optional attributes are absent: valid, and the body is kept byte for byte (issue 9, defect 6)', () => {
    const nulls = { subject: null, time: null, datacontenttype: null, dataschema: null, data_base64: null };
    for (const [name, value] of Object.entries(nulls)) {
      const body = JSON.stringify(cloudEvent(`null-${name}`, { [name]: value }));
      const result = parseEvent(body, 1_048_576);
      expect(result.ok, name).toBe(true);
      if (result.ok) expect(result.body.equals(Buffer.from(body, 'utf8'))).toBe(true);
    }
    expect(parseEvent(JSON.stringify(cloudEvent('all-null', { ...nulls, data: null })), 1_048_576).ok).toBe(true);
    // Required attributes stay required.
    for (const name of ['id', 'source', 'type', 'specversion']) {
      expect(parseEvent(JSON.stringify(cloudEvent('x', { [name]: null })), 1_048_576).ok, name).toBe(false);
    }
  });

  it('JSON that is not an object', () => {
    const cases: Array<[string, string]> = [
      ['[1,2]', 'an array'],
      ['null', 'null'],
      ['42', 'a number'],
      ['"text"', 'a string'],
      ['true', 'a boolean'],
    ];
    for (const [body, what] of cases) {
      expect(invalid(body)).toMatchObject({ reason: 'not-object', detail: `the body is ${what}, not a JSON object` });
    }
  });

  const cloudEventCases: Array<[string, Record<string, unknown> | string, string]> = [
    ['missing specversion', { specversion: undefined }, 'specversion'],
    ['wrong specversion', { specversion: '0.3' }, 'specversion'],
    ['numeric specversion', { specversion: 1 }, 'specversion'],
    ['missing id', { id: undefined }, 'id'],
    ['empty id', { id: '' }, 'id'],
    ['numeric id', { id: 7 }, 'id'],
    ['empty source', { source: '' }, 'source'],
    ['missing type', { type: undefined }, 'type'],
    ['empty type', { type: '' }, 'type'],
    ['empty subject', { subject: '' }, 'subject'],
    ['time that is not a timestamp', { time: 'yesterday' }, 'time'],
    ['time without a zone offset', { time: '2026-11-25T10:00:00' }, 'time'],
    ['time that does not exist', { time: '2026-02-30T10:00:00Z' }, 'time'],
    ['relative dataschema', { dataschema: '/schemas/order.json' }, 'dataschema'],
    ['dataschema that is no URI', { dataschema: 'not a uri' }, 'dataschema'],
    ['datacontenttype with a line break', { datacontenttype: 'text/plain\r\nX-Evil: y' }, 'datacontenttype'],
    ['datacontenttype beyond Latin-1', { datacontenttype: 'text/plain; name=\u2713' }, 'datacontenttype'],
    ['datacontenttype with a NUL', { datacontenttype: 'text/plain\u0000' }, 'datacontenttype'],
    ['datacontenttype without a subtype', { datacontenttype: 'json' }, 'datacontenttype'],
    ['datacontenttype with a bare parameter', { datacontenttype: 'text/plain; charset' }, 'datacontenttype'],
    ['data_base64 that is not base64', { data_base64: 'not base64!' }, 'data_base64'],
    ['data and data_base64 together', { data: { a: 1 }, data_base64: 'AAEC' }, 'data_base64'],
    ['extension name with capitals', { Foo: 'x' }, 'Foo'],
    ['extension name with an underscore', { my_ext: 'x' }, 'my_ext'],
    ['extension with an object value', { comexample: { nested: true } }, 'comexample'],
    ['extension with an array value', { comexample: [1] }, 'comexample'],
    [
      'extension named __proto__',
      '{"specversion":"1.0","id":"evt-1","source":"urn:test:orders","type":"t","__proto__":{"x":1}}',
      '__proto__',
    ],
  ];

  it.each(cloudEventCases)('invalid CloudEvent: %s, naming the attribute', (_, changes, attribute) => {
    const body = typeof changes === 'string' ? changes : withAttributes(changes);
    const result = invalid(body);
    expect(result.reason).toBe('invalid-cloudevent');
    expect(result.detail).toContain(`${attribute}: `);
  });

  it('never quotes an extension name that is not name-like: keys are body text too (issue 9, defect 7)', () => {
    for (const name of ['Authorization: Bearer s3cr3t', 'pass\u0001s3cr3t', 'S3cr3t'.repeat(20)]) {
      const result = invalid(withAttributes({ [name]: 'x', Upper: 'y' }));
      expect(result.reason).toBe('invalid-cloudevent');
      expect(result.detail.toLowerCase()).not.toContain('s3cr3t');
      expect(result.detail).toContain('Upper');
      expect(result.detail).toMatch(/\(a name of \d+ characters, not shown\)/);
    }
  });

  it('reports several problems at once', () => {
    const detail = invalid(withAttributes({ id: '', type: undefined })).detail;
    expect(detail).toContain('id: ');
    expect(detail).toContain('type: ');
  });
});

describe('parseEvent: what the detail says (issue 9, mutation testing)', () => {
  it.each([
    [{ id: '' }, 'id: must be a non-empty string'],
    [{ specversion: '0.3' }, 'specversion: must be "1.0"'],
    [{ datacontenttype: 'json' }, 'datacontenttype: must be a media type (RFC 9110), e.g. "application/json"'],
    [{ dataschema: 'not a uri' }, 'dataschema: must be an absolute URI'],
    [{ data_base64: 'not base64!' }, 'data_base64: must be base64'],
    [{ data: { a: 1 }, data_base64: 'AAEC' }, 'data_base64: data and data_base64 are mutually exclusive'],
    [{ dataschema: 'urn:s', ext: { a: 1 } }, 'ext: extension attributes must be strings, numbers or booleans'],
  ])('%j → %s', (changes, detail) => {
    expect(invalid(withAttributes(changes)).detail).toBe(detail);
  });

  it('names at most five problems, separated by semicolons', () => {
    const body = withAttributes({ id: '', source: '', type: '', subject: '', time: 'x', datacontenttype: 'x' });
    const parts = invalid(body).detail.split('; ');
    expect(parts).toHaveLength(5);
    expect(parts[0]).toBe('id: must be a non-empty string');
  });

  it('names at most five bad extension names, separated by commas', () => {
    const body = withAttributes({ Aa: 1, Bb: 1, Cc: 1, Dd: 1, Ee: 1, Ff: 1 });
    expect(invalid(body).detail).toBe(
      'Aa, Bb, Cc, Dd, Ee: extension attribute names must be lower-case ASCII letters and digits',
    );
  });

  it('a context attribute with an object value is one problem, not also a bad extension', () => {
    for (const name of ['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema']) {
      const detail = invalid(withAttributes({ [name]: { x: 1 } })).detail;
      expect(detail.split('; '), name).toHaveLength(1);
      expect(detail.startsWith(`${name}: `), name).toBe(true);
    }
  });

  it.each([
    ['{"a":', 'unexpected end of input at position 5'],
    ['{"a":"\\x"}', 'bad escape in a string at position 7'],
    ['{"a" 1}', 'expected a double-quoted property name or a colon after it at position 5'],
    ['{"a":1 "b"}', "expected ',' or a closing bracket at position 7"],
    ['{"a":-x}', 'malformed number at position 6'],
  ])('not JSON %j: %s', (body, expected) => {
    expect(invalid(body).detail).toBe(`the body is not JSON: ${expected} (of ${body.length} characters)`);
  });

  it('searches the position of an error V8 does not place in bodies of up to 1,024 characters', () => {
    // V8 says only "Unexpected token ']'" here; the position is found by parsing prefixes.
    const searched = `[${'1,'.repeat(511)}]`;
    expect(searched).toHaveLength(1024);
    expect(invalid(searched).detail).toBe(
      'the body is not JSON: unexpected character at position 1023 (of 1024 characters)',
    );
    const tooLong = `[ ${'1,'.repeat(511)}]`;
    expect(invalid(tooLong).detail).toBe(
      'the body is not JSON: unexpected character at an unreported position (of 1025 characters)',
    );
  });
});

describe('parseEvent: the fast path and the schema agree', () => {
  it('takes the fast path for every plain valid event (the CPU figure in BENCHMARKS.md relies on it)', () => {
    for (const changes of [
      {},
      { subject: 'order/42', time: '2026-11-25T10:00:00Z', datacontenttype: 'application/json' },
      { data: { orderId: 42 }, ext: 'x', num: 7, flag: false, none: null },
      { data: [1, 2] },
    ]) {
      expect(plainlyValid(JSON.parse(withAttributes(changes))), JSON.stringify(changes)).toBe(true);
    }
  });

  it('refuses non-string time and datacontenttype even when their text would pass', () => {
    for (const changes of [{ time: ['2026-01-01T00:00:00Z'] }, { datacontenttype: ['text/plain'] }]) {
      expect(plainlyValid(JSON.parse(withAttributes(changes)))).toBe(false);
      expect(invalid(withAttributes(changes)).reason).toBe('invalid-cloudevent');
    }
  });

  it('the schema accepts scalar and null extensions, and refuses others (path taken with a dataschema)', () => {
    for (const value of ['x', 7, true, null]) {
      expect(parseEvent(withAttributes({ dataschema: 'urn:s', ext: value }), MAX).ok, String(value)).toBe(true);
    }
    expect(parseEvent(withAttributes({ dataschema: 'urn:s', ext: [1] }), MAX).ok).toBe(false);
  });

  it('CloudEventSchema (exported) refuses a bad extension name itself', () => {
    const result = CloudEventSchema.safeParse({ ...minimal, Bad: 'x', good: 'y' });
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((issue) => [issue.path, issue.message])).toEqual([
      [['Bad'], 'extension attribute names must be lower-case ASCII letters and digits'],
    ]);
  });
});

describe('parseEvent: time must be an instant that exists (RFC 3339)', () => {
  // Each case goes through the fast path and, with a dataschema, through the schema: both must agree.
  const accepted = (time: string) =>
    [withAttributes({ time }), withAttributes({ time, dataschema: 'urn:s' })].map((body) => parseEvent(body, MAX).ok);
  const months31 = ['01', '03', '05', '07', '08', '10', '12'];
  const months30 = ['04', '06', '09', '11'];

  it.each([
    ...months31.map((month) => `2026-${month}-31T00:00:00Z`),
    ...[...months30, '01'].map((month) => `2026-${month}-30T00:00:00Z`),
    '2026-02-28T00:00:00Z',
    '2024-02-29T00:00:00Z',
    '2000-02-29T00:00:00Z',
    '2026-12-31t23:59:60.999999+23:59',
    '2026-01-01T00:00:00-00:00',
    '2026-06-15T12:30:45z',
  ])('accepts %s', (time) => {
    expect(accepted(time)).toEqual([true, true]);
  });

  it.each([
    ...months30.map((month) => `2026-${month}-31T00:00:00Z`),
    '2026-02-29T00:00:00Z',
    '2023-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2026-13-01T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-01-00T00:00:00Z',
    '2026-01-32T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T00:60:00Z',
    '2026-01-01T00:00:61Z',
    '2026-01-01T00:00:00+24:00',
    '2026-01-01T00:00:00+00:60',
    '2026-01-01T00:00:00+0100',
    '2026-01-01T00:00Z',
    '2026-1-01T00:00:00Z',
    '26-01-01T00:00:00Z',
    '2026-01-01T00:00:00.Z',
    '2026-01-01 00:00:00Z',
    'x2026-01-01T00:00:00Z',
    '2026-01-01T00:00:00Zx',
  ])('refuses %s, naming time', (time) => {
    expect(accepted(time)).toEqual([false, false]);
    expect(invalid(withAttributes({ time })).detail).toContain('time: must be an RFC 3339 timestamp');
  });
});

describe('idempotencyKey', () => {
  it('is the sha256 hex of JSON [source, id]', () => {
    const expected = createHash('sha256').update('["urn:a","1"]').digest('hex');
    expect(idempotencyKey('urn:a', '1')).toBe(expected);
    expect(expected).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is the same on a Node without crypto.hash (before 20.12): ledger items stay valid across runtimes', async () => {
    vi.resetModules();
    vi.doMock('node:crypto', async (importOriginal) => ({ ...(await importOriginal<object>()), hash: undefined }));
    onTestFinished(() => {
      vi.doUnmock('node:crypto');
      vi.resetModules();
    });
    const fallback = await import('../../../lib/event/event');
    expect(fallback.idempotencyKey('urn:a', '1')).toBe(createHash('sha256').update('["urn:a","1"]').digest('hex'));
  });

  it('is stable for the same event and different for different events', () => {
    expect(idempotencyKey('urn:a', '1')).toBe(idempotencyKey('urn:a', '1'));
    expect(idempotencyKey('urn:a', '1')).not.toBe(idempotencyKey('urn:a', '2'));
    expect(idempotencyKey('urn:a', '1')).not.toBe(idempotencyKey('urn:b', '1'));
    expect(idempotencyKey('1', 'urn:a')).not.toBe(idempotencyKey('urn:a', '1'));
  });

  it('cannot be confused by separators inside source or id', () => {
    expect(idempotencyKey('a|b', 'c')).not.toBe(idempotencyKey('a', 'b|c'));
    expect(idempotencyKey('a","b', 'c')).not.toBe(idempotencyKey('a', 'b","c'));
    expect(idempotencyKey('a:b', 'c')).not.toBe(idempotencyKey('a', 'b:c'));
  });

  it('is injective over (source, id) pairs (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (s1, i1, s2, i2) => {
        fc.pre(s1 !== s2 || i1 !== i2);
        expect(idempotencyKey(s1, i1)).not.toBe(idempotencyKey(s2, i2));
      }),
    );
  });

  it('does not depend on the rest of the event', () => {
    const a = valid(JSON.stringify({ ...minimal, data: 1 }));
    const b = valid(`{"source":"urn:test:orders","id":"evt-1","specversion":"1.0","type":"other.type"}`);
    expect(a.key).toBe(b.key);
  });
});

describe('parseEvent: number extensions are CloudEvents Integers, carried as written', () => {
  const head = JSON.stringify(minimal).slice(0, -1);
  // Both paths: the fast path, and the schema's (taken when the event has a dataschema).
  const bodies = (ext: string) => [`${head},"count":${ext}}`, `${head},"dataschema":"urn:s","count":${ext}}`];

  it('accepts whole numbers from -2147483648 to 2147483647, written as digits', () => {
    for (const ext of ['0', '7', '-7', '2147483647', '-2147483648']) {
      for (const body of bodies(ext)) expect(valid(body).attributes.count, body).toBe(Number(ext));
    }
  });

  it('accepts -0: JSON format 1.0.2 (2.2) permits an integer component prefixed with a minus sign; it is the Integer 0', () => {
    for (const body of bodies('-0')) {
      const event = valid(body);
      // Routing filters compare as text: it is the extension value '0'.
      expect(String(event.attributes.count), body).toBe('0');
      // Binary mode sends the Integer's canonical string, the same value.
      expect(binaryMessage(event.attributes, event.body).headers['ce-count']).toBe('0');
    }
  });

  it('refuses numbers outside int32 or with a fraction, naming the attribute', () => {
    for (const ext of ['2147483648', '-2147483649', '12345678901234567890', '1.5', '1e400']) {
      for (const body of bodies(ext)) {
        const result = invalid(body);
        expect(result.reason, body).toBe('invalid-cloudevent');
        expect(result.detail, body).toMatch(/^count: a number extension must be a CloudEvents Integer/);
      }
    }
  });

  it('refuses an Integer not written as digits (1.0, 1e3): a ce- header would change it', () => {
    for (const [ext, canonical] of [
      ['1.0', '1'],
      ['1e3', '1000'],
      ['-0.0', '0'],
      ['10E-1', '1'],
    ] as const) {
      for (const body of bodies(ext)) {
        const result = invalid(body);
        expect(result.reason, body).toBe('invalid-cloudevent');
        expect(result.detail, body).toBe(
          `count: a CloudEvents Integer is written as digits only (no fraction or exponent): write ${canonical}, or quote the value to send it as text`,
        );
      }
    }
    // Escaped names and repeated members are read as JSON.parse reads them (the last one counts).
    expect(invalid(`${head},"c\\u006funt":1.0}`).detail).toMatch(/^count: /);
    expect(valid(`${head},"c\\u006funt":1}`).attributes.count).toBe(1);
    expect(valid(`${head},"count":1.0,"count":1}`).attributes.count).toBe(1);
    expect(invalid(`${head},"count":1,"count":1.0}`).reason).toBe('invalid-cloudevent');
  });

  it('reads the body once, however many number extensions it has (one scan each made it quadratic)', () => {
    // A 218 KB event of 16,000 number extensions took 142 s of CPU: one such message times out its whole batch.
    const count = 500;
    const extensions = Array.from({ length: count }, (_, i) => `"e${i}":${i}`).join(',');
    const parse = vi.spyOn(JSON, 'parse');
    onTestFinished(() => parse.mockRestore());
    for (const body of bodies(`1,${extensions}`)) {
      parse.mockClear();
      expect(valid(body).attributes.e499, body.slice(0, 80)).toBe(499);
      // The body once, and at most each member's name once.
      expect(parse.mock.calls.length).toBeLessThanOrEqual(1 + count + 8);
    }
  });
});

describe('parseEvent properties', () => {
  const contextAttributes = ['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema'];
  const extensionName = fc
    .stringMatching(/^[a-z0-9]{1,20}$/)
    .filter((name) => name !== 'data' && !contextAttributes.includes(name));

  const anyObject = fc.dictionary(fc.string(), fc.jsonValue());
  const nearlyEvent = fc.record(
    {
      specversion: fc.oneof(fc.constant('1.0'), fc.jsonValue()),
      id: fc.oneof(fc.string(), fc.jsonValue()),
      source: fc.oneof(fc.string(), fc.jsonValue()),
      type: fc.oneof(fc.string(), fc.jsonValue()),
      subject: fc.oneof(fc.string(), fc.jsonValue()),
      time: fc.oneof(
        fc.string(),
        fc.stringMatching(/^\d{4}-[01]\d-[0-3]\d[Tt][0-2]\d:[0-6]\d:[0-6]\d(\.\d{1,3})?([Zz]|[+-][0-2]\d:[0-6]\d)$/),
        fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
      ),
      datacontenttype: fc.oneof(
        fc.constantFrom('text/plain', 'application/json; charset=utf-8'),
        fc.string(),
        fc.jsonValue(),
      ),
      data: fc.jsonValue(),
    },
    { requiredKeys: [] },
  );
  const scalar = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.jsonValue());

  it("the schema's fast path accepts only what the schema accepts, and all of it for plain events", () => {
    // Null subject/time/datacontenttype, dataschema and data_base64 are left to the schema (see plainlyValid).
    const plain = (json: Record<string, unknown>) =>
      !('dataschema' in json || 'data_base64' in json || Object.hasOwn(json, '__proto__')) &&
      ['subject', 'time', 'datacontenttype'].every((name) => json[name] !== null);
    // Mostly valid: each optional attribute and extension is the one thing that may be wrong.
    const nearlyPlain = nearlyEvent.map((event) => ({
      ...event,
      specversion: '1.0',
      id: 'evt-1',
      source: 'urn:s',
      type: 't',
    }));
    const candidate = fc
      .tuple(
        fc.oneof(nearlyEvent, nearlyPlain),
        fc.dictionary(fc.oneof(extensionName, fc.string()), scalar, { maxKeys: 3 }),
      )
      .map(([event, extra]) => JSON.parse(JSON.stringify({ ...extra, ...event })) as Record<string, unknown>);
    fc.assert(
      fc.property(candidate, (json) => {
        const accepted = CloudEventSchema.safeParse(json).success;
        if (plainlyValid(json)) expect(accepted).toBe(true);
        else if (plain(json)) expect(accepted).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws, whatever the body', () => {
    const nearlyEventWithData = fc.record(
      {
        specversion: fc.oneof(fc.constant('1.0'), fc.jsonValue()),
        id: fc.oneof(fc.string(), fc.jsonValue()),
        source: fc.oneof(fc.string(), fc.jsonValue()),
        type: fc.oneof(fc.string(), fc.jsonValue()),
        time: fc.oneof(
          fc.string(),
          fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
        ),
        dataschema: fc.oneof(fc.string(), fc.webUrl()),
        data: fc.jsonValue(),
        data_base64: fc.oneof(fc.string(), fc.base64String()),
      },
      { requiredKeys: [] },
    );
    const body = fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary' }),
      fc.json(),
      anyObject.map((value) => JSON.stringify(value)),
      fc.tuple(nearlyEventWithData, anyObject).map(([event, extra]) => JSON.stringify({ ...extra, ...event })),
    );
    fc.assert(
      fc.property(body, fc.integer({ min: 1, max: 2048 }), (text, maxBytes) => {
        const result = parseEvent(text, maxBytes);
        return result.ok || result.detail.length > 0;
      }),
      { numRuns: 200 },
    );
    // CPU-bound (2.5-4.5 s on a loaded 2-core machine): vitest's 5 s default would fail it for the load, not the code.
  }, 30_000);

  it('accepts every well-formed event, body unchanged and key from source and id', () => {
    const event = fc.record({
      specversion: fc.constant('1.0'),
      id: fc.string({ minLength: 1, unit: 'grapheme' }),
      source: fc.string({ minLength: 1 }),
      type: fc.string({ minLength: 1 }),
      extensions: fc.dictionary(extensionName, fc.oneof(fc.string(), fc.integer(), fc.boolean()), { maxKeys: 3 }),
      data: fc.option(fc.jsonValue(), { nil: undefined }),
    });
    fc.assert(
      fc.property(event, ({ extensions, ...attributes }) => {
        const text = JSON.stringify({ ...extensions, ...attributes });
        const result = valid(text);
        expect(result.body.toString('utf8')).toBe(text);
        expect(result.key).toBe(idempotencyKey(attributes.source, attributes.id));
      }),
      { numRuns: 300 },
    );
  });
});

describe('eventIdOf (the id in log lines the event history searches)', () => {
  it('reads a string id, and gives an empty one for a body that names none', () => {
    expect(eventIdOf(JSON.stringify({ id: 'order-1', type: 't' }))).toBe('order-1');
    for (const body of ['not json', 'null', '{"id":7}', '[]', '']) expect(eventIdOf(body), body).toBe('');
  });
});
