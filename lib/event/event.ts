import { createHash, hash } from 'node:crypto';
import * as z from 'zod/mini';
import type { InvalidReason } from '../types';
import { rawMembers } from './raw-json';

const nonEmpty = z.string().check(z.minLength(1, 'must be a non-empty string'));

export const CONTEXT_ATTRIBUTES: ReadonlySet<string> = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'datacontenttype',
  'dataschema',
  'data',
  'data_base64',
]);
// CloudEvents 1.0: attribute names MUST be lower-case ASCII letters or digits.
const EXTENSION_NAME = /^[a-z0-9]+$/;
// RFC 9110 media type: token/token *(OWS ";" OWS [token "=" (token / quoted-string)]); it becomes a Content-Type.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*(?:${TOKEN}=(?:${TOKEN}|${QUOTED}))?)*$`);
// RFC 3339 date-time; 'T' and 'Z' may be lower case.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

function isRfc3339(value: string): boolean {
  const match = RFC3339.exec(value);
  if (!match) return false;
  const year = Number(match[1]);
  const month = Number(match[2]);
  const day = Number(match[3]);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : 30 + ((month + (month >> 3)) & 1);
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    Number(match[4]) <= 23 &&
    Number(match[5]) <= 59 &&
    Number(match[6]) <= 60 &&
    Number(match[8] ?? 0) <= 23 &&
    Number(match[9] ?? 0) <= 59
  );
}

const isNonEmpty = (value: unknown) => typeof value === 'string' && value.length > 0;
// CloudEvents 1.0 type system: an Integer is a whole number from -2,147,483,648 to +2,147,483,647.
const isInteger = (value: unknown) =>
  typeof value === 'number' && Number.isInteger(value) && value >= -2_147_483_648 && value <= 2_147_483_647;
const isScalar = (value: unknown) =>
  value === null || typeof value === 'string' || typeof value === 'boolean' || isInteger(value);
const NOT_AN_INTEGER =
  'a number extension must be a CloudEvents Integer (a whole number from -2147483648 to 2147483647): quote it to send it as text';

/**
 * True only for events the schema below certainly accepts (no dataschema, no data_base64: those take the schema).
 * The schema's safeParse was 5-10 µs of the handler's 61 µs per event (BENCHMARKS.md, CPU per event); a false here
 * just means the schema decides and explains.
 */
export function plainlyValid(json: Record<string, unknown>): boolean {
  if (json.specversion !== '1.0' || !isNonEmpty(json.id) || !isNonEmpty(json.source) || !isNonEmpty(json.type)) {
    return false;
  }
  for (const name in json) {
    if (!Object.hasOwn(json, name)) continue;
    const value = json[name];
    switch (name) {
      case 'specversion':
      case 'id':
      case 'source':
      case 'type':
      case 'data':
        break;
      case 'subject':
        if (value !== undefined && !isNonEmpty(value)) return false;
        break;
      case 'datacontenttype':
        if (value !== undefined && !(typeof value === 'string' && MEDIA_TYPE.test(value))) return false;
        break;
      case 'time':
        if (value !== undefined && !(typeof value === 'string' && isRfc3339(value))) return false;
        break;
      case 'dataschema':
      case 'data_base64':
        return false;
      default:
        if (!EXTENSION_NAME.test(name) || !isScalar(value)) return false;
    }
  }
  return true;
}

/** Extension names that are not allowed, read from the raw JSON (a schema's output would swallow a '__proto__' key). */
function badExtensionNames(json: object): string[] {
  return Object.keys(json).filter((name) => !CONTEXT_ATTRIBUTES.has(name) && !EXTENSION_NAME.test(name));
}

// JSON format 1.0.2, section 2.2: a null attribute value MUST be treated as absent.
const absentOr = <T extends z.core.SomeType>(schema: T) => z.optional(z.nullable(schema));

/**
 * CloudEvents 1.0, JSON structured format. Extension attributes are kept; their names and scalar values are checked.
 * Optional attributes may be null (= absent); the body is still delivered byte for byte, nulls included.
 */
export const CloudEventSchema = z
  .looseObject({
    specversion: z.literal('1.0', 'must be "1.0"'),
    id: nonEmpty,
    source: nonEmpty,
    type: nonEmpty,
    subject: absentOr(nonEmpty),
    time: absentOr(z.string().check(z.refine(isRfc3339, 'must be an RFC 3339 timestamp'))),
    datacontenttype: absentOr(
      z.string().check(z.regex(MEDIA_TYPE, 'must be a media type (RFC 9110), e.g. "application/json"')),
    ),
    dataschema: absentOr(z.url('must be an absolute URI')),
    data: z.optional(z.unknown()),
    data_base64: absentOr(z.base64('must be base64')),
  })
  .check(
    z.superRefine((event, ctx) => {
      if (event.data != null && event.data_base64 != null) {
        ctx.addIssue({ code: 'custom', message: 'data and data_base64 are mutually exclusive', path: ['data_base64'] });
      }
      for (const [name, value] of Object.entries(event)) {
        if (CONTEXT_ATTRIBUTES.has(name)) continue;
        if (!EXTENSION_NAME.test(name)) {
          ctx.addIssue({
            code: 'custom',
            message: 'extension attribute names must be lower-case ASCII letters and digits',
            path: [name],
          });
        } else if (value !== null && !['string', 'number', 'boolean'].includes(typeof value)) {
          ctx.addIssue({
            code: 'custom',
            message: 'extension attributes must be strings, numbers or booleans',
            path: [name],
          });
        } else if (typeof value === 'number' && !isInteger(value)) {
          ctx.addIssue({ code: 'custom', message: NOT_AN_INTEGER, path: [name] });
        }
      }
    }),
  );

export type CloudEvent = z.infer<typeof CloudEventSchema>;

/** A record that can be delivered: its body bytes, as received, and the key that identifies the event everywhere. */
export interface ValidEvent {
  ok: true;
  id: string;
  source: string;
  type: string;
  key: string;
  body: Buffer;
  /** The parsed event: routing filters and binary content mode read it. */
  attributes: CloudEvent;
}

export interface InvalidEvent {
  ok: false;
  reason: InvalidReason;
  detail: string;
}

/** The CloudEvent id a record's body names, for log lines an operator searches by it; '' when it names none. */
export function eventIdOf(body: string): string {
  try {
    const id: unknown = (JSON.parse(body) as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? id : '';
  } catch {
    return '';
  }
}

/** The same event (source + id) always gets the same key, at every endpoint and on every redelivery. */
export function idempotencyKey(source: string, id: string): string {
  const input = JSON.stringify([source, id]);
  // crypto.hash (Node ≥ 20.12) is one call instead of a Hash object per event.
  return typeof hash === 'function' ? hash('sha256', input, 'hex') : createHash('sha256').update(input).digest('hex');
}

function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length ? issue.path.join('.') : '(event)'}: ${issue.message}`)
    .join('; ');
}

// V8's messages quote the body ("Unexpected token 'p', "password=h"..."): only a fixed kind is kept.
const JSON_ERROR_KINDS: ReadonlyArray<[RegExp, string]> = [
  [/end of JSON input/, 'unexpected end of input'],
  [/Unterminated string/, 'unterminated string'],
  [/Bad control character/, 'control character in a string'],
  [/Bad (escaped character|Unicode escape)/, 'bad escape in a string'],
  [/after JSON/, 'more content after the JSON value'],
  [/property name/, 'expected a double-quoted property name or a colon after it'],
  [/Expected ',' or/, "expected ',' or a closing bracket"],
  [/number|minus sign|exponent/i, 'malformed number'],
];

// V8: `Unexpected token 'x', "<body>" is not valid JSON` or `…, ..."<snippet>"... is not valid JSON`.
const QUOTED_BODY = /, (\.\.\.)?"[\s\S]*"(\.\.\.)? is not valid JSON$/;

/** Where and what kind of JSON error, never a byte of the body (it can hold secrets that logs must not). */
function notJsonDetail(body: string, error: unknown): string {
  // Matched without the quoted body: "hello number" must not read as a malformed number.
  const message = (error instanceof Error ? error.message : '').replace(QUOTED_BODY, '');
  const kind = JSON_ERROR_KINDS.find(([pattern]) => pattern.test(message))?.[1] ?? 'unexpected character';
  const stated = /at position (\d+)/.exec(message)?.[1];
  const searchable = body.length <= SEARCHED_BODY_MAX_CHARS;
  const position =
    stated !== undefined
      ? Number(stated)
      : /end of JSON input/.test(message)
        ? body.length
        : searchable
          ? firstBadIndex(body)
          : undefined;
  const at = position === undefined ? 'at an unreported position' : `at position ${position}`;
  return `the body is not JSON: ${kind} ${at} (of ${body.length} characters)`;
}

// The search parses up to ~log2(n) prefixes: on a 256 KiB body that was ~100× the CPU of a valid parse, for a producer.
const SEARCHED_BODY_MAX_CHARS = 1024;

/**
 * The index of the character V8 stopped at when its message gives none: the shortest prefix that fails for a
 * reason other than ending early, found by bisection (only invalid bodies pay for it).
 */
function firstBadIndex(body: string): number {
  const failsInside = (length: number) => {
    try {
      JSON.parse(body.slice(0, length));
      return false;
    } catch (error) {
      const message = error instanceof Error ? error.message : '';
      const at = /at position (\d+)/.exec(message)?.[1];
      return !/end of JSON input/.test(message) && (at === undefined || Number(at) < length);
    }
  };
  let low = 1;
  let high = body.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (failsInside(middle)) high = middle;
    else low = middle + 1;
  }
  return low - 1;
}

// A key is body text too: one that does not look like an attribute name (a token, a sentence) is described instead.
const SHOWABLE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function shownName(name: string): string {
  return SHOWABLE_NAME.test(name) ? name : `(a name of ${Array.from(name).length} characters, not shown)`;
}

/**
 * An Integer extension written otherwise than as plain digits (1.0, 1e3): JSON.parse reads it as the same number,
 * but a binary-mode ce- header would carry '1' for the '1.0' sent, so it is refused rather than changed.
 */
function nonCanonicalInteger(attributes: CloudEvent, bytes: Buffer): string | undefined {
  // Read once for all of them: one scan per extension made a 218 KB event of 16,000 numbers cost 142 s of CPU.
  let raw: Map<string, Buffer> | undefined;
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value !== 'number' || CONTEXT_ATTRIBUTES.has(name)) continue;
    raw ??= rawMembers(bytes);
    const written = raw.get(name)?.toString('utf8');
    // JSON format 1.0.2 (2.2) permits '-0' (a minus sign and the integer component): the Integer 0, sent as '0'.
    if (written !== String(value) && !(written === '-0' && value === 0)) {
      return `${name}: a CloudEvents Integer is written as digits only (no fraction or exponent): write ${String(value)}, or quote the value to send it as text`;
    }
  }
  return undefined;
}

function accepted(attributes: CloudEvent, bytes: Buffer): ValidEvent | InvalidEvent {
  const problem = nonCanonicalInteger(attributes, bytes);
  if (problem) return { ok: false, reason: 'invalid-cloudevent', detail: problem };
  const { id, source, type } = attributes;
  return { ok: true, id, source, type, key: idempotencyKey(source, id), body: bytes, attributes };
}

/** Parses one SQS record body; never throws. */
export function parseEvent(body: string | undefined, maxBytes: number): ValidEvent | InvalidEvent {
  if (!body) return { ok: false, reason: 'empty-body', detail: 'the message body is empty' };
  const bytes = Buffer.from(body, 'utf8');
  if (bytes.length > maxBytes) {
    return {
      ok: false,
      reason: 'too-large',
      detail: `the body is ${bytes.length} bytes; MAX_EVENT_BYTES allows ${maxBytes}`,
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    return { ok: false, reason: 'not-json', detail: notJsonDetail(body, error) };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    const what = json === null ? 'null' : Array.isArray(json) ? 'an array' : `a ${typeof json}`;
    return { ok: false, reason: 'not-object', detail: `the body is ${what}, not a JSON object` };
  }
  if (plainlyValid(json as Record<string, unknown>)) {
    // What the schema would return: it transforms nothing, and plainlyValid accepted only what it accepts.
    return accepted(json as CloudEvent, bytes);
  }
  const badNames = badExtensionNames(json);
  if (badNames.length > 0) {
    return {
      ok: false,
      reason: 'invalid-cloudevent',
      detail: `${badNames.slice(0, 5).map(shownName).join(', ')}: extension attribute names must be lower-case ASCII letters and digits`,
    };
  }
  const result = CloudEventSchema.safeParse(json);
  if (!result.success) {
    return { ok: false, reason: 'invalid-cloudevent', detail: describeIssues(result.error.issues) };
  }
  return accepted(result.data, bytes);
}
