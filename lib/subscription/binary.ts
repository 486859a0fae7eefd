import { type CloudEvent, rawMember } from '../event';

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
  // A null optional attribute (or null data) is absent, as lib/event/event.ts treats it.
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
