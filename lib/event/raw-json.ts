// Reads a member of a JSON document as the bytes written: lib/event/event.ts checks how an Integer extension is written,
// lib/subscription/binary.ts sends data byte for byte.

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
 * The exact bytes of each top-level member's value in a valid JSON object (the last of a repeated name, as JSON.parse
 * keeps), in one pass over the document, so data is sent as written: re-serialising would turn 12345678901234567890
 * into 12345678901234567000 and 1.0 into 1.
 */
export function rawMembers(json: Buffer): Map<string, Buffer> {
  const members = new Map<string, Buffer>();
  let i = skipSpace(json, 0);
  if (json[i] !== 0x7b) return members;
  for (i = skipSpace(json, i + 1); json[i] === QUOTE; ) {
    const keyEnd = endOfString(json, i);
    const key: unknown = JSON.parse(json.toString('utf8', i, keyEnd));
    const start = skipSpace(json, skipSpace(json, keyEnd) + 1);
    const end = endOfValue(json, start);
    members.set(String(key), json.subarray(start, end));
    i = skipSpace(json, end);
    if (json[i] === 0x2c) i = skipSpace(json, i + 1);
  }
  return members;
}

/** The exact bytes of one top-level member's value (see rawMembers). */
export function rawMember(json: Buffer, name: string): Buffer | undefined {
  return rawMembers(json).get(name);
}
