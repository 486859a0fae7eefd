import * as z from 'zod/mini';
import { ConfigError } from '../errors';
import {
  DEFAULT_RETRY_SCHEDULE,
  type EndpointConfig,
  parseEndpointsDocument,
  RetryScheduleSchema,
} from '../subscription/schema';
import { isLoopbackHost, parseEndpointUrl, redact, withoutQuery } from './endpoint-url';

export type { EndpointConfig };
export { isLoopbackHost };

/** An endpoints file, already read: its parsed content (YAML or JSON) and a name for errors (its path). */
export interface EndpointsDocument {
  document: unknown;
  source: string;
}

export interface Config {
  endpoints: EndpointConfig[];
  deliveryTimeoutMs: number;
  deliveryMaxAttempts: number;
  deliveryRetryBaseMs: number;
  deliveryRetryMaxMs: number;
  endpointMaxConnections: number;
  deadlineMarginMs: number;
  maxEventBytes: number;
  circuitBreakerThreshold: number;
  circuitBreakerHalfOpenMs: number;
  quarantineQueueUrl?: string;
  retryBaseDelayS: number;
  retryMaxDelayS: number;
  ledgerTable?: string;
  ledgerTtlS: number;
  /** DELIVERY_LEDGER_MODE: which receives read the ledger and which outcomes write it (see LEDGER_MODES). */
  ledgerMode: LedgerMode;
  /** LANE_QUEUE_URL_PREFIX: an endpoint's lane queue URL is this + its name; unset, nothing is parked (no lanes). */
  laneQueueUrlPrefix?: string;
  /** PARK_AFTER_S: a record failing for an endpoint this long after its first receive is parked in that lane. */
  parkAfterS: number;
  /** LANE_RETRY_SCHEDULE: the lane waits (s) of every endpoint whose entry sets no retrySchedule. */
  laneRetrySchedule: readonly number[];
}

/**
 * `redeliveries` (default): read only for records SQS delivers again (ApproximateReceiveCount > 1), write only for
 * events that go back to the queue with some endpoints done; costs scale with failures.
 * `every-delivery`: read for every record and write every delivery; also skips endpoints for a producer's duplicate
 * sent as a new message, and for a batch whose invocation died before answering.
 */
export const LEDGER_MODES = ['redeliveries', 'every-delivery'] as const;
export type LedgerMode = (typeof LEDGER_MODES)[number];

type Env = Record<string, string | undefined>;

const NAME = /^[a-z0-9][a-z0-9-]*$/;

function parseEndpoints(value: string | undefined): EndpointConfig[] {
  const variable = 'ENDPOINTS';
  if (!value?.trim()) {
    throw new ConfigError(
      variable,
      "is required: set comma-separated name=url pairs, e.g. 'analytics=https://a.example.com/events,audit=https://audit.example.com/ce'",
    );
  }
  const seen = new Set<string>();
  const endpoints = value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part, index, parts) => {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new ConfigError(variable, notAPair(part, parts[index - 1]));
      const name = part.slice(0, eq).trim();
      const raw = part.slice(eq + 1).trim();
      if (!NAME.test(name)) {
        throw new ConfigError(
          variable,
          `'${name}' is not a valid endpoint name: use lowercase letters, digits and dashes`,
        );
      }
      if (seen.has(name))
        throw new ConfigError(variable, `endpoint name '${name}' appears twice: names must be unique`);
      seen.add(name);
      const parsed = parseEndpointUrl(raw);
      if ('problem' in parsed) {
        const shown = parsed.shown === undefined ? `'${name}'` : `'${name}=${parsed.shown}'`;
        throw new ConfigError(variable, `${shown} ${parsed.problem}`);
      }
      const { url } = parsed;
      return { name, url };
    });
  if (endpoints.length === 0) {
    throw new ConfigError(
      variable,
      "has no name=url pair: set at least one, e.g. 'analytics=https://a.example.com/events'",
    );
  }
  return endpoints;
}

/** A part after a URL with a query or fragment may be the rest of it (a token with a comma): it is not shown. */
function notAPair(part: string, previous: string | undefined): string {
  if (previous === undefined || !/[?#]/.test(previous)) return `'${part}' is not a name=url pair`;
  const name = previous.slice(0, Math.max(0, previous.indexOf('='))).trim();
  return (
    `the part after endpoint '${name}' is not a name=url pair (not shown: it may be the rest of that URL's query ` +
    'string): percent-encode commas in URLs as %2C'
  );
}

interface IntSpec {
  variable: string;
  fallback: number;
  min: number;
  max: number;
  unit?: string;
}

function readInt(env: Env, spec: IntSpec): number {
  const raw = env[spec.variable];
  if (raw === undefined || raw.trim() === '') return spec.fallback;
  const schema = z.coerce.number().check(z.int(), z.gte(spec.min), z.lte(spec.max));
  const result = schema.safeParse(raw.trim());
  if (!result.success || !/^-?\d+$/.test(raw.trim())) {
    const unit = spec.unit ? ` ${spec.unit}` : '';
    throw new ConfigError(
      spec.variable,
      `'${raw}' is not a whole number from ${spec.min} to ${spec.max}${unit} (default ${spec.fallback})`,
    );
  }
  return result.data;
}

/** Comma-separated whole seconds, e.g. '1,5,30': the local stack's short schedule; unset, the day-long default. */
function readRetrySchedule(env: Env): readonly number[] {
  const variable = 'LANE_RETRY_SCHEDULE';
  const raw = env[variable]?.trim();
  if (!raw) return DEFAULT_RETRY_SCHEDULE;
  const parts = raw.split(',').map((part) => part.trim());
  const result = RetryScheduleSchema.safeParse(parts.every((part) => /^\d+$/.test(part)) ? parts.map(Number) : null);
  if (!result.success) {
    throw new ConfigError(
      variable,
      `'${raw}' is not 1 to 20 comma-separated whole seconds from 1 to 43200, e.g. '5,60,300' ` +
        `(unset: ${DEFAULT_RETRY_SCHEDULE.join(',')}, about 27.6 h)`,
    );
  }
  return result.data;
}

function parseOptionalString(env: Env, variable: string, check?: (value: string) => string | undefined) {
  const raw = env[variable]?.trim();
  if (!raw) return undefined;
  const problem = check?.(raw);
  if (problem) throw new ConfigError(variable, problem);
  return raw;
}

function checkQueueUrl(value: string): string | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      return `'${withoutQuery(url)}' must be an https SQS queue URL (http only for loopback hosts)`;
    }
    return url.pathname.split('/').filter(Boolean).length === 2
      ? undefined
      : `'${withoutQuery(url)}' is not a queue URL: expected https://sqs.<region>.amazonaws.com/<account>/<queue-name>`;
  } catch {
    return `'${redact(value)}' is not a URL: expected https://sqs.<region>.amazonaws.com/<account>/<queue-name>`;
  }
}

/** The prefix is a queue URL up to the endpoint name: the template sets `.../<account>/<service>-<stage>-lane-`. */
function checkLanePrefix(value: string): string | undefined {
  const problem = checkQueueUrl(value);
  if (problem)
    return `${problem.replace('SQS queue URL', 'SQS queue URL prefix')} (the lane of endpoint 'x' is the prefix + 'x')`;
  return /[A-Za-z0-9_-]$/.test(value)
    ? undefined
    : `'${redact(value)}' must end in the lane queue name's prefix (letters, digits, '-', '_'), e.g. https://sqs.us-east-1.amazonaws.com/123456789012/ingest-fanout-prod-lane-`;
}

function chooseEndpoints(env: Env, file: EndpointsDocument | undefined): EndpointConfig[] {
  if (!file) return parseEndpoints(env.ENDPOINTS);
  if (env.ENDPOINTS?.trim()) {
    throw new ConfigError(
      'ENDPOINTS',
      `is set and so is the endpoints file ${file.source}: keep one list of endpoints (empty ENDPOINTS)`,
    );
  }
  return parseEndpointsDocument(file.document, file.source);
}

export interface LoadOptions {
  /** A deployed or packaged stage (default: running in Lambda, AWS_LAMBDA_FUNCTION_NAME set): no plain http. */
  deployed?: boolean;
}

/** Lambda sets AWS_LAMBDA_FUNCTION_NAME in every function; the local stack and the tests do not. */
export function isDeployed(env: Env): boolean {
  return Boolean(env.AWS_LAMBDA_FUNCTION_NAME?.trim());
}

/**
 * Plain http to loopback is for local runs: in Lambda, 127.0.0.1 is the Runtime API and the extensions, which an
 * endpoint (or token) URL of a deployed stage must never reach.
 */
function refuseLoopbackHttp(endpoints: readonly EndpointConfig[], variable: string): void {
  for (const endpoint of endpoints) {
    const { auth } = endpoint;
    const tokenUrl = auth?.kind === 'oauth2-client-credentials' ? new URL(auth.tokenUrl) : undefined;
    for (const [field, url] of [
      ['url', endpoint.url],
      ['auth.tokenUrl', tokenUrl],
    ] as const) {
      if (url?.protocol !== 'http:') continue;
      throw new ConfigError(
        variable,
        `endpoint '${endpoint.name}' ${field}: plain http (to a loopback host) is accepted only for local runs ` +
          '(npm start, the tests), not in a deployed or packaged stage, where 127.0.0.1 is the Lambda Runtime API: use https',
      );
    }
  }
}

/**
 * Reads the whole configuration once; throws ConfigError naming the first bad variable (or file, endpoint and
 * field). The endpoints come from `endpointsFile` when given, else from ENDPOINTS.
 */
export function loadConfig(env: Env, endpointsFile?: EndpointsDocument, options: LoadOptions = {}): Config {
  const endpoints = chooseEndpoints(env, endpointsFile);
  if (options.deployed ?? isDeployed(env)) refuseLoopbackHttp(endpoints, endpointsFile?.source ?? 'ENDPOINTS');
  const retryBaseDelayS = readInt(env, {
    variable: 'RETRY_BASE_DELAY_S',
    fallback: 10,
    min: 0,
    max: 43_200,
    unit: 's',
  });
  const retryMaxDelayS = readInt(env, { variable: 'RETRY_MAX_DELAY_S', fallback: 900, min: 0, max: 43_200, unit: 's' });
  if (retryMaxDelayS < retryBaseDelayS) {
    throw new ConfigError(
      'RETRY_MAX_DELAY_S',
      `${retryMaxDelayS} is below RETRY_BASE_DELAY_S (${retryBaseDelayS}): the cap must be at least the base delay`,
    );
  }
  const deliveryRetryBaseMs = readInt(env, {
    variable: 'DELIVERY_RETRY_BASE_MS',
    fallback: 100,
    min: 1,
    max: 60_000,
    unit: 'ms',
  });
  const deliveryRetryMaxMs = readInt(env, {
    variable: 'DELIVERY_RETRY_MAX_MS',
    fallback: 2000,
    min: 1,
    max: 300_000,
    unit: 'ms',
  });
  if (deliveryRetryMaxMs < deliveryRetryBaseMs) {
    throw new ConfigError(
      'DELIVERY_RETRY_MAX_MS',
      `${deliveryRetryMaxMs} is below DELIVERY_RETRY_BASE_MS (${deliveryRetryBaseMs}): the cap must be at least the base`,
    );
  }
  const config: Config = {
    endpoints,
    deliveryTimeoutMs: readInt(env, {
      variable: 'DELIVERY_TIMEOUT_MS',
      fallback: 5000,
      min: 1,
      max: 900_000,
      unit: 'ms',
    }),
    deliveryMaxAttempts: readInt(env, { variable: 'DELIVERY_MAX_ATTEMPTS', fallback: 3, min: 1, max: 20 }),
    deliveryRetryBaseMs,
    deliveryRetryMaxMs,
    endpointMaxConnections: readInt(env, { variable: 'ENDPOINT_MAX_CONNECTIONS', fallback: 100, min: 1, max: 1024 }),
    deadlineMarginMs: readInt(env, {
      variable: 'DEADLINE_MARGIN_MS',
      fallback: 1000,
      min: 500,
      max: 600_000,
      unit: 'ms',
    }),
    maxEventBytes: readInt(env, {
      variable: 'MAX_EVENT_BYTES',
      fallback: 1_048_576,
      min: 1,
      max: 1_048_576,
      unit: 'bytes',
    }),
    circuitBreakerThreshold: readInt(env, {
      variable: 'CIRCUIT_BREAKER_THRESHOLD',
      fallback: 10,
      min: 0,
      max: 100_000,
    }),
    circuitBreakerHalfOpenMs: readInt(env, {
      variable: 'CIRCUIT_BREAKER_HALF_OPEN_MS',
      fallback: 5000,
      min: 1,
      max: 900_000,
      unit: 'ms',
    }),
    retryBaseDelayS,
    retryMaxDelayS,
    ledgerTtlS: readInt(env, {
      variable: 'DELIVERY_LEDGER_TTL_S',
      fallback: 1_296_000,
      min: 60,
      max: 31_536_000,
      unit: 's',
    }),
    ledgerMode: readLedgerMode(env),
    parkAfterS: readInt(env, { variable: 'PARK_AFTER_S', fallback: 300, min: 0, max: 1_209_600, unit: 's' }),
    laneRetrySchedule: readRetrySchedule(env),
  };
  const quarantineQueueUrl = parseOptionalString(env, 'QUARANTINE_QUEUE_URL', checkQueueUrl);
  if (quarantineQueueUrl) config.quarantineQueueUrl = quarantineQueueUrl;
  const ledgerTable = parseOptionalString(env, 'DELIVERY_LEDGER_TABLE', (value) =>
    /^[a-zA-Z0-9_.-]{3,255}$/.test(value)
      ? undefined
      : `'${value}' is not a DynamoDB table name (3-255 of letters, digits, '_', '-', '.')`,
  );
  if (ledgerTable) config.ledgerTable = ledgerTable;
  const lanePrefix = parseOptionalString(env, 'LANE_QUEUE_URL_PREFIX', checkLanePrefix);
  if (lanePrefix) config.laneQueueUrlPrefix = lanePrefix;
  return config;
}

function readLedgerMode(env: Env): LedgerMode {
  const variable = 'DELIVERY_LEDGER_MODE';
  const raw = env[variable]?.trim();
  if (!raw) return 'redeliveries';
  const parsed = z.enum(LEDGER_MODES).safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      variable,
      `'${raw}' is not a ledger mode: use ${LEDGER_MODES.map((m) => `'${m}'`).join(' or ')}`,
    );
  }
  return parsed.data;
}
