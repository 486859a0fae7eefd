import type { CloudEvent } from '../event';

// Context attributes that are not sent as ce- headers in binary mode (HTTP binding 1.0.2, section 3.1.3).
const NOT_HEADERS = new Set(['data', 'data_base64', 'datacontenttype']);
// Printable ASCII but space, '"' and '%' passes through unencoded (section 3.1.3.2).
const SAFE = /^[\x21\x23\x24\x26-\x7e]*$/;
const JSON_TYPE = /^application\/(?:[^;\s]+\+)?json\s*(?:;|$)/i;

/** Percent-encodes a header value as the CloudEvents HTTP binding 1.0.2, section 3.1.3.2, says. */
export function percentEncode(value: string): string {
  if (SAFE.test(value)) return value;
  let out = '';
  for (const char of value) {
    if (SAFE.test(char)) out += char;
    else for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function isJsonContentType(type: string | undefined): boolean {
  return type === undefined || JSON_TYPE.test(type);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const isSpace = (byte: number | undefined) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;

function skipSpace(json: Buffer, at: number): number {
  let i = at;
  while (isSpace(json[i])) i++;
  return i;
}

/** The index just past the string that opens at `at`. */
function endOfString(json: Buffer, at: number): number {
  for (let i = at + 1; i < json.length; i++) {
    if (json[i] === BACKSLASH) i++;
    else if (json[i] === QUOTE) return i + 1;
  }
  return json.length;
}

/** The index just past the value that starts at `at` (the document is known to be valid JSON). */
function endOfValue(json: Buffer, at: number): number {
  let depth = 0;
  let i = at;
  while (i < json.length) {
    const byte = json[i]!;
    if (byte === QUOTE) {
      i = endOfString(json, i);
      if (depth === 0) return i;
      continue;
    }
    if (byte === 0x7b || byte === 0x5b) depth++;
    else if (byte === 0x7d || byte === 0x5d) {
      if (depth === 0) return i;
      if (--depth === 0) return i + 1;
    } else if (depth === 0 && (byte === 0x2c || isSpace(byte))) return i;
    i++;
  }
  return i;
}

/**
 * The exact bytes of a top-level member's value in a valid JSON object (the last one, as JSON.parse keeps), so data
 * is sent as written: re-serialising would turn 12345678901234567890 into 12345678901234567000 and 1.0 into 1.
 */
export function rawMember(json: Buffer, name: string): Buffer | undefined {
  let i = skipSpace(json, 0);
  if (json[i] !== 0x7b) return undefined;
  let found: Buffer | undefined;
  for (i = skipSpace(json, i + 1); json[i] === QUOTE; ) {
    const keyEnd = endOfString(json, i);
    const key: unknown = JSON.parse(json.toString('utf8', i, keyEnd));
    const start = skipSpace(json, skipSpace(json, keyEnd) + 1);
    const end = endOfValue(json, start);
    if (key === name) found = json.subarray(start, end);
    i = skipSpace(json, end);
    if (json[i] === 0x2c) i = skipSpace(json, i + 1);
  }
  return found;
}

/**
 * The event in binary content mode: context attributes as ce- headers, the data as the body. `raw` is the event as
 * received: JSON data is then sent byte for byte as it appears there.
 */
export function binaryMessage(event: CloudEvent, raw?: Buffer): { headers: Record<string, string>; body: Buffer } {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event)) {
    if (NOT_HEADERS.has(name) || value === undefined || value === null) continue;
    headers[`ce-${name}`] = percentEncode(String(value));
  }
  // A null optional attribute (or null data) is absent, as lib/event.ts treats it.
  const type = event.datacontenttype ?? undefined;
  const data = event.data ?? undefined;
  let body: Buffer;
  if (event.data_base64 != null) body = Buffer.from(event.data_base64, 'base64');
  else if (data === undefined) body = Buffer.alloc(0);
  // A JSON format event with no datacontenttype carries JSON data; a string of another type is sent as it is.
  else if (typeof data === 'string' && !isJsonContentType(type)) body = Buffer.from(data, 'utf8');
  else body = (raw && rawMember(raw, 'data')) ?? Buffer.from(JSON.stringify(data), 'utf8');
  if (type !== undefined) headers['content-type'] = type;
  else if (data !== undefined) headers['content-type'] = 'application/json';
  return { headers, body };
}
