import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Config, isLoopbackHost, loadConfig } from '../../../lib/config/config';
import { ConfigError } from '../../../lib/errors';

const ENDPOINTS = 'analytics=https://a.example.com/events';

/** Runs loadConfig and returns the ConfigError it throws; fails the test if it does not throw one. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

function expectRejected(env: Record<string, string | undefined>, variable: string, ...fragments: string[]) {
  const error = configError(env);
  expect(error.variable).toBe(variable);
  expect(error.message.startsWith(`${variable}: `)).toBe(true);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
}

describe('loadConfig defaults', () => {
  it('fills every optional variable with its documented default', () => {
    const config = loadConfig({ ENDPOINTS });
    expect(config).toEqual({
      endpoints: [{ name: 'analytics', url: new URL('https://a.example.com/events') }],
      deliveryTimeoutMs: 5000,
      deliveryMaxAttempts: 3,
      deliveryRetryBaseMs: 100,
      deliveryRetryMaxMs: 2000,
      endpointMaxConnections: 100,
      deadlineMarginMs: 1000,
      maxEventBytes: 1_048_576,
      circuitBreakerThreshold: 10,
      circuitBreakerHalfOpenMs: 5000,
      retryBaseDelayS: 10,
      retryMaxDelayS: 900,
      ledgerTtlS: 1_296_000,
      ledgerMode: 'redeliveries',
      parkAfterS: 300,
      laneRetrySchedule: [5, 60, 300, 1800, 7200, 18000, 36000, 36000],
    });
    expect(config.quarantineQueueUrl).toBeUndefined();
    expect(config.laneQueueUrlPrefix).toBeUndefined();
    expect(config.ledgerTable).toBeUndefined();
  });

  it('treats empty and blank values as unset', () => {
    const blank = loadConfig({
      ENDPOINTS,
      DELIVERY_TIMEOUT_MS: '',
      DELIVERY_MAX_ATTEMPTS: '   ',
      QUARANTINE_QUEUE_URL: '',
      DELIVERY_LEDGER_TABLE: ' ',
    });
    expect(blank).toEqual(loadConfig({ ENDPOINTS }));
  });

  it('reads every variable that is set', () => {
    const config = loadConfig({
      ENDPOINTS:
        'analytics=https://a.example.com/events, search=https://s.example.com/in ,audit=http://127.0.0.1:9000/ce',
      DELIVERY_TIMEOUT_MS: '250',
      DELIVERY_MAX_ATTEMPTS: '5',
      DELIVERY_RETRY_BASE_MS: '20',
      DELIVERY_RETRY_MAX_MS: '400',
      ENDPOINT_MAX_CONNECTIONS: '8',
      DEADLINE_MARGIN_MS: '1500',
      MAX_EVENT_BYTES: '262144',
      CIRCUIT_BREAKER_THRESHOLD: '0',
      CIRCUIT_BREAKER_HALF_OPEN_MS: '100',
      QUARANTINE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/ingest-quarantine',
      RETRY_BASE_DELAY_S: '5',
      RETRY_MAX_DELAY_S: '60',
      DELIVERY_LEDGER_TABLE: 'ingest-ledger.v1',
      DELIVERY_LEDGER_TTL_S: '3600',
      DELIVERY_LEDGER_MODE: 'every-delivery',
      LANE_RETRY_SCHEDULE: ' 1, 5 ,30',
    });
    expect(config.endpoints.map((endpoint) => [endpoint.name, endpoint.url.href])).toEqual([
      ['analytics', 'https://a.example.com/events'],
      ['search', 'https://s.example.com/in'],
      ['audit', 'http://127.0.0.1:9000/ce'],
    ]);
    expect(config).toMatchObject({
      deliveryTimeoutMs: 250,
      deliveryMaxAttempts: 5,
      deliveryRetryBaseMs: 20,
      deliveryRetryMaxMs: 400,
      endpointMaxConnections: 8,
      deadlineMarginMs: 1500,
      maxEventBytes: 262_144,
      circuitBreakerThreshold: 0,
      circuitBreakerHalfOpenMs: 100,
      quarantineQueueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/ingest-quarantine',
      retryBaseDelayS: 5,
      retryMaxDelayS: 60,
      ledgerTable: 'ingest-ledger.v1',
      ledgerTtlS: 3600,
      ledgerMode: 'every-delivery',
      laneRetrySchedule: [1, 5, 30],
    });
  });
});

describe('LANE_RETRY_SCHEDULE', () => {
  it('refuses anything but 1 to 20 whole seconds from 1 to 43200, naming the variable and the form', () => {
    for (const value of ['soon', '5,,60', '0', '1.5', '-5', '43201', '5;60', Array(21).fill('1').join(',')]) {
      expectRejected(
        { ENDPOINTS, LANE_RETRY_SCHEDULE: value },
        'LANE_RETRY_SCHEDULE',
        'comma-separated whole seconds from 1 to 43200',
        "e.g. '5,60,300'",
      );
    }
  });
});

describe('ENDPOINTS', () => {
  it('is required', () => {
    for (const value of [undefined, '', '   ']) {
      expectRejected({ ENDPOINTS: value }, 'ENDPOINTS', 'is required', 'name=url');
    }
  });

  it('needs at least one endpoint, not just separators', () => {
    for (const value of [',', ' , , ']) expectRejected({ ENDPOINTS: value }, 'ENDPOINTS');
  });

  it('rejects entries that are not name=url pairs', () => {
    expectRejected({ ENDPOINTS: 'https://a.example.com/events' }, 'ENDPOINTS', 'is not a name=url pair');
    expectRejected({ ENDPOINTS: '=https://a.example.com/events' }, 'ENDPOINTS', 'is not a name=url pair');
    expectRejected({ ENDPOINTS: `${ENDPOINTS},search` }, 'ENDPOINTS', "'search' is not a name=url pair");
    // Review finding 8: a comma inside a query string must not put the rest of the token in the message.
    const error = configError({ ENDPOINTS: 'a=https://h.example.com/in?tag=AB,CD' });
    expect(error.message).toContain("the part after endpoint 'a' is not a name=url pair");
    expect(error.message).not.toMatch(/AB|CD/);
  });

  it('rejects names that are not lowercase letters, digits and dashes', () => {
    for (const name of ['Analytics', 'my_sink', 'a.b', '-lead', 'search engine']) {
      expectRejected(
        { ENDPOINTS: `${name}=https://a.example.com/x` },
        'ENDPOINTS',
        `'${name}' is not a valid endpoint name`,
        'lowercase letters, digits and dashes',
      );
    }
  });

  it('rejects a name used twice', () => {
    expectRejected(
      { ENDPOINTS: 'a=https://a.example.com/1,b=https://b.example.com,a=https://a.example.com/2' },
      'ENDPOINTS',
      "'a' appears twice",
      'unique',
    );
  });

  it('rejects a value that is not an absolute URL', () => {
    for (const url of ['not a url', '/relative/path', 'a.example.com/events', 'https://']) {
      expectRejected({ ENDPOINTS: `a=${url}` }, 'ENDPOINTS', 'no valid absolute URL');
    }
  });

  it('rejects schemes other than http(s)', () => {
    expectRejected({ ENDPOINTS: 'a=ftp://a.example.com/in' }, 'ENDPOINTS', 'must be an https URL');
  });

  it('accepts plain http only for loopback hosts, without connecting anywhere', () => {
    for (const url of [
      'http://10.0.0.7/in',
      'http://example.com/in',
      'http://192.168.1.20:8080/in',
      'http://[::2]/x',
      'http://api.localhost/in',
    ]) {
      expectRejected({ ENDPOINTS: `beta=${url}` }, 'ENDPOINTS', 'must use https', 'loopback');
    }
    for (const url of [
      'http://127.0.0.1:8080/in',
      'http://127.12.0.3/in',
      'http://[::1]:9000/in',
      'http://localhost:3000/in',
      'http://LOCALHOST/in',
    ]) {
      expect(loadConfig({ ENDPOINTS: `local=${url}` }).endpoints[0]?.url.href).toBe(new URL(url).href);
    }
  });

  it('never echoes a URL query string or fragment, naming the variable and the endpoint (issue 9, defect 7)', () => {
    for (const url of [
      'http://api.localhost/in?token=s3cr3t-q',
      'http://10.0.0.7/in?token=s3cr3t-q',
      'ftp://a.example.com/in?token=s3cr3t-q',
      'https://exa mple.com/in?token=s3cr3t-q',
      'http://example.com/in#s3cr3t-q',
    ]) {
      const error = configError({ ENDPOINTS: `beta=${url}` });
      expect(error.variable).toBe('ENDPOINTS');
      expect(error.message).toContain("'beta=");
      expect(error.message).not.toContain('s3cr3t-q');
    }
    for (const url of [
      'http://10.0.0.7/123/q?token=s3cr3t-q',
      'https://sqs.example.com/q?token=s3cr3t-q',
      'x?s3cr3t-q',
    ]) {
      const error = configError({ ENDPOINTS, QUARANTINE_QUEUE_URL: url });
      expect(error.variable).toBe('QUARANTINE_QUEUE_URL');
      expect(error.message).not.toContain('s3cr3t-q');
    }
  });

  it('rejects credentials in a URL without repeating them', () => {
    const error = configError({ ENDPOINTS: 'a=https://user:s3cr3t-pw@a.example.com/events' });
    expect(error.variable).toBe('ENDPOINTS');
    expect(error.message).toContain('credentials');
    expect(error.message).not.toContain('s3cr3t-pw');
    expect(configError({ ENDPOINTS: 'a=http://user:pw@127.0.0.1:9000/' }).message).toContain('credentials');
  });

  it('never repeats a password, whatever else is wrong with the URL', () => {
    // Cold-start errors end up in CloudWatch: a secret in the URL must not be echoed by any check.
    const error = configError({ ENDPOINTS: 'a=http://user:s3cr3t-pw@10.0.0.7/events' });
    expect(error.variable).toBe('ENDPOINTS');
    expect(error.message).not.toContain('s3cr3t-pw');
  });

  it('round-trips any valid list of name=url pairs (property)', () => {
    const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,15}$/);
    const segment = fc.stringMatching(/^[A-Za-z0-9._~-]{1,12}$/);
    const https = fc
      .tuple(fc.domain(), fc.option(fc.integer({ min: 1, max: 65_535 }), { nil: undefined }), fc.array(segment))
      .map(([host, port, path]) => `https://${host}${port ? `:${port}` : ''}/${path.join('/')}`);
    const loopback = fc
      .tuple(
        fc.constantFrom('127.0.0.1', '127.3.2.1', '[::1]', 'localhost'),
        fc.integer({ min: 1, max: 65_535 }),
        fc.array(segment),
      )
      .map(([host, port, path]) => `http://${host}:${port}/${path.join('/')}`);
    const pairs = fc.uniqueArray(fc.tuple(name, fc.oneof(https, loopback)), {
      minLength: 1,
      maxLength: 6,
      selector: ([n]) => n,
    });
    fc.assert(
      fc.property(pairs, fc.constantFrom('', ' '), (list, pad) => {
        const env = list.map(([n, url]) => `${pad}${n}=${url}${pad}`).join(',');
        const config = loadConfig({ ENDPOINTS: env });
        expect(config.endpoints.map((endpoint) => endpoint.name)).toEqual(list.map(([n]) => n));
        expect(config.endpoints.map((endpoint) => endpoint.url.href)).toEqual(list.map(([, url]) => new URL(url).href));
      }),
    );
  });
});

describe('numeric variables', () => {
  const numeric: Array<{ variable: string; key: keyof Config; min: number; max: number }> = [
    { variable: 'DELIVERY_TIMEOUT_MS', key: 'deliveryTimeoutMs', min: 1, max: 900_000 },
    { variable: 'DELIVERY_MAX_ATTEMPTS', key: 'deliveryMaxAttempts', min: 1, max: 20 },
    { variable: 'DELIVERY_RETRY_BASE_MS', key: 'deliveryRetryBaseMs', min: 1, max: 60_000 },
    { variable: 'DELIVERY_RETRY_MAX_MS', key: 'deliveryRetryMaxMs', min: 1, max: 300_000 },
    { variable: 'ENDPOINT_MAX_CONNECTIONS', key: 'endpointMaxConnections', min: 1, max: 1024 },
    { variable: 'DEADLINE_MARGIN_MS', key: 'deadlineMarginMs', min: 500, max: 600_000 },
    { variable: 'MAX_EVENT_BYTES', key: 'maxEventBytes', min: 1, max: 1_048_576 },
    { variable: 'CIRCUIT_BREAKER_THRESHOLD', key: 'circuitBreakerThreshold', min: 0, max: 100_000 },
    { variable: 'CIRCUIT_BREAKER_HALF_OPEN_MS', key: 'circuitBreakerHalfOpenMs', min: 1, max: 900_000 },
    { variable: 'RETRY_BASE_DELAY_S', key: 'retryBaseDelayS', min: 0, max: 43_200 },
    { variable: 'RETRY_MAX_DELAY_S', key: 'retryMaxDelayS', min: 0, max: 43_200 },
    { variable: 'DELIVERY_LEDGER_TTL_S', key: 'ledgerTtlS', min: 60, max: 31_536_000 },
    { variable: 'PARK_AFTER_S', key: 'parkAfterS', min: 0, max: 1_209_600 },
  ];
  // The caps may not be below their bases: keep the partner variable out of the way of the bound under test.
  const partners: Record<string, Record<string, string>> = {
    DELIVERY_RETRY_BASE_MS: { DELIVERY_RETRY_MAX_MS: '300000' },
    DELIVERY_RETRY_MAX_MS: { DELIVERY_RETRY_BASE_MS: '1' },
    RETRY_BASE_DELAY_S: { RETRY_MAX_DELAY_S: '43200' },
    RETRY_MAX_DELAY_S: { RETRY_BASE_DELAY_S: '0' },
  };

  it.each(numeric)('$variable rejects non-numeric, fractional and exotic values', ({ variable, min, max }) => {
    for (const value of ['abc', '12abc', '1.5', '2.0', '1e3', '0x10', 'NaN', 'Infinity', '5 5']) {
      expectRejected(
        { ENDPOINTS, ...partners[variable], [variable]: value },
        variable,
        `'${value}' is not a whole number from ${min} to ${max}`,
      );
    }
  });

  it.each(numeric)('$variable accepts its range and rejects values outside', ({ variable, key, min, max }) => {
    const env = { ENDPOINTS, ...partners[variable] };
    expect(loadConfig({ ...env, [variable]: String(min) })[key]).toBe(min);
    expect(loadConfig({ ...env, [variable]: String(max) })[key]).toBe(max);
    expect(loadConfig({ ...env, [variable]: ` ${max} ` })[key]).toBe(max);
    for (const value of [String(min - 1), String(max + 1), '-5']) {
      expectRejected({ ...env, [variable]: value }, variable);
    }
  });

  it('names the range and the default in the message', () => {
    expectRejected(
      { ENDPOINTS, DELIVERY_TIMEOUT_MS: 'soon' },
      'DELIVERY_TIMEOUT_MS',
      "'soon' is not a whole number from 1 to 900000 ms (default 5000)",
    );
  });

  it('RETRY_MAX_DELAY_S below RETRY_BASE_DELAY_S is an error on the cap', () => {
    expectRejected(
      { ENDPOINTS, RETRY_BASE_DELAY_S: '30', RETRY_MAX_DELAY_S: '20' },
      'RETRY_MAX_DELAY_S',
      'below RETRY_BASE_DELAY_S (30)',
    );
    expectRejected({ ENDPOINTS, RETRY_BASE_DELAY_S: '1000' }, 'RETRY_MAX_DELAY_S', '900 is below');
    expect(loadConfig({ ENDPOINTS, RETRY_BASE_DELAY_S: '20', RETRY_MAX_DELAY_S: '20' }).retryMaxDelayS).toBe(20);
  });

  it('DELIVERY_RETRY_MAX_MS below DELIVERY_RETRY_BASE_MS is an error on the cap', () => {
    expectRejected(
      { ENDPOINTS, DELIVERY_RETRY_BASE_MS: '500', DELIVERY_RETRY_MAX_MS: '100' },
      'DELIVERY_RETRY_MAX_MS',
      'below DELIVERY_RETRY_BASE_MS (500)',
    );
  });
});

describe('LANE_QUEUE_URL_PREFIX', () => {
  it('accepts a queue URL up to the endpoint name, and http only on loopback', () => {
    const prefix = 'https://sqs.us-east-1.amazonaws.com/123456789012/ingest-fanout-prod-lane-';
    expect(loadConfig({ ENDPOINTS, LANE_QUEUE_URL_PREFIX: prefix }).laneQueueUrlPrefix).toBe(prefix);
    const local = 'http://127.0.0.1:9324/000000000000/lanes-';
    expect(loadConfig({ ENDPOINTS, LANE_QUEUE_URL_PREFIX: ` ${local} ` }).laneQueueUrlPrefix).toBe(local);
  });

  it('rejects what cannot be a lane queue URL without the endpoint name', () => {
    expectRejected({ ENDPOINTS, LANE_QUEUE_URL_PREFIX: 'lanes-' }, 'LANE_QUEUE_URL_PREFIX', 'is not a URL');
    expectRejected(
      { ENDPOINTS, LANE_QUEUE_URL_PREFIX: 'http://sqs.us-east-1.amazonaws.com/123456789012/lane-' },
      'LANE_QUEUE_URL_PREFIX',
      'must be an https SQS queue URL prefix',
    );
    expectRejected(
      { ENDPOINTS, LANE_QUEUE_URL_PREFIX: 'https://sqs.us-east-1.amazonaws.com/123456789012/lane.' },
      'LANE_QUEUE_URL_PREFIX',
      "must end in the lane queue name's prefix",
    );
  });
});

describe('QUARANTINE_QUEUE_URL', () => {
  it('accepts an SQS queue URL, and http only on loopback', () => {
    const url = 'https://sqs.eu-west-1.amazonaws.com/123456789012/quarantine.fifo';
    expect(loadConfig({ ENDPOINTS, QUARANTINE_QUEUE_URL: url }).quarantineQueueUrl).toBe(url);
    const local = 'http://127.0.0.1:9324/000000000000/quarantine';
    expect(loadConfig({ ENDPOINTS, QUARANTINE_QUEUE_URL: ` ${local} ` }).quarantineQueueUrl).toBe(local);
  });

  it('rejects malformed queue URLs', () => {
    expectRejected({ ENDPOINTS, QUARANTINE_QUEUE_URL: 'quarantine' }, 'QUARANTINE_QUEUE_URL', 'is not a URL');
    expectRejected(
      { ENDPOINTS, QUARANTINE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/quarantine' },
      'QUARANTINE_QUEUE_URL',
      'is not a queue URL',
      'https://sqs.<region>.amazonaws.com/<account>/<queue-name>',
    );
    expectRejected(
      { ENDPOINTS, QUARANTINE_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/1/2/3' },
      'QUARANTINE_QUEUE_URL',
      'is not a queue URL',
    );
    expectRejected(
      { ENDPOINTS, QUARANTINE_QUEUE_URL: 'http://sqs.us-east-1.amazonaws.com/123456789012/q' },
      'QUARANTINE_QUEUE_URL',
      'must be an https SQS queue URL',
    );
  });
});

describe('DELIVERY_LEDGER_TABLE', () => {
  it('accepts DynamoDB table names', () => {
    for (const table of ['abc', 'ingest_ledger', 'Ingest-Ledger.v2', 'x'.repeat(255)]) {
      expect(loadConfig({ ENDPOINTS, DELIVERY_LEDGER_TABLE: table }).ledgerTable).toBe(table);
    }
  });

  it('rejects names DynamoDB would refuse', () => {
    for (const table of [
      'ab',
      'ledger table',
      'ledger/table',
      'x'.repeat(256),
      'arn:aws:dynamodb:us-east-1:1:table/x',
    ]) {
      expectRejected(
        { ENDPOINTS, DELIVERY_LEDGER_TABLE: table },
        'DELIVERY_LEDGER_TABLE',
        'is not a DynamoDB table name',
      );
    }
  });
});

describe('plain http to loopback: local runs only (issue 15 A10)', () => {
  const LOCAL = 'a=http://127.0.0.1:9001/in';
  const refusal =
    "endpoint 'a' url: plain http (to a loopback host) is accepted only for local runs (npm start, the tests), not in " +
    'a deployed or packaged stage, where 127.0.0.1 is the Lambda Runtime API: use https';

  it('is accepted locally (the local stack and the tests set no AWS_LAMBDA_FUNCTION_NAME)', () => {
    expect(loadConfig({ ENDPOINTS: LOCAL }).endpoints[0]?.url.href).toBe('http://127.0.0.1:9001/in');
  });

  it('is refused in Lambda and when packaging, for the url and for an OAuth token URL', () => {
    expectRejected({ ENDPOINTS: LOCAL, AWS_LAMBDA_FUNCTION_NAME: 'ingest-fanout-prod-ingest' }, 'ENDPOINTS', refusal);
    expect(() => loadConfig({ ENDPOINTS: LOCAL }, undefined, { deployed: true })).toThrow(`ENDPOINTS: ${refusal}`);
    for (const url of ['http://localhost/in', 'http://[::1]:8080/in']) {
      expect(() => loadConfig({ ENDPOINTS: `a=${url}` }, undefined, { deployed: true })).toThrow(/plain http/);
    }
    const oauth = {
      kind: 'oauth2-client-credentials',
      tokenUrl: 'http://127.0.0.1:9002/token',
      clientId: 'c',
      clientSecret: { ssm: '/c' },
    };
    const file = {
      document: { endpoints: [{ name: 'a', url: 'https://a.example.com/in', auth: oauth }] },
      source: 'f.yml',
    };
    expect(() => loadConfig({}, file, { deployed: true })).toThrow("f.yml: endpoint 'a' auth.tokenUrl: plain http");
    expect(loadConfig({}, file).endpoints).toHaveLength(1);
    expect(loadConfig({ ENDPOINTS }, undefined, { deployed: true }).endpoints).toHaveLength(1);
  });
});

describe('secrets in a URL query string (issue 15 A10)', () => {
  it('refuses a query parameter named like a secret, naming the parameter, never the value', () => {
    for (const name of [
      'token',
      'access_token',
      'api_key',
      'apiKey',
      'key',
      'sig',
      'Signature',
      'password',
      'pwd',
      'auth',
      'X-Amz-Credential',
      'sessionid',
      'client_secret',
    ]) {
      const error = configError({ ENDPOINTS: `a=https://a.example.com/in?tenant=acme&${name}=s3cr3t-v&x=1` });
      expect(error.message, name).toBe(
        `ENDPOINTS: 'a' has a query parameter named like a secret, '${name}': a URL is bundled into the artifact in ` +
          'clear and logged by proxies; send it as a header (auth kind apiKey or bearer with a secret reference in ' +
          'the endpoints file, or ENDPOINT_CREDENTIALS)',
      );
    }
    const file = (url: string) => ({ document: { endpoints: [{ name: 'a', url }] }, source: 'f.yml' });
    expect(() => loadConfig({}, file('https://a.example.com/in?token=s3cr3t-v'))).toThrow(
      "f.yml: endpoint 'a' (endpoints[0]): url: has a query parameter named like a secret, 'token'",
    );
    const odd = configError({ ENDPOINTS: 'a=https://a.example.com/in?my%20s3cr3t%20token=v' });
    expect(odd.message).toContain('named like a secret, (name not shown)');
    expect(odd.message).not.toContain('s3cr3t');
  });

  it('refuses a fragment: never sent to the endpoint, yet bundled in clear (#access_token=… is a common paste)', () => {
    for (const url of ['https://a.example.com/in#access_token=s3cr3t-v', 'https://a.example.com/in?v=2#s3cr3t-v']) {
      const error = configError({ ENDPOINTS: `a=${url}` });
      expect(error.message, url).toBe(
        "ENDPOINTS: 'a' has a fragment (#…), which is never sent to the endpoint and would be bundled into the " +
          'artifact in clear: remove it',
      );
    }
    const file = {
      document: { endpoints: [{ name: 'a', url: 'https://a.example.com/in#s3cr3t-v' }] },
      source: 'f.yml',
    };
    expect(() => loadConfig({}, file)).toThrow("f.yml: endpoint 'a' (endpoints[0]): url: has a fragment (#…)");
  });

  it('accepts query parameters with other names', () => {
    const url = 'https://a.example.com/in?tenant=acme&region=eu&v=2';
    expect(loadConfig({ ENDPOINTS: `a=${url}` }).endpoints[0]?.url.href).toBe(url);
  });
});

describe('isLoopbackHost', () => {
  it('knows loopback from the rest', () => {
    for (const host of ['127.0.0.1', '127.255.255.254', '::1', '[::1]', 'localhost', 'LocalHost']) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    // *.localhost is resolved through DNS (issue 9, defect 10).
    for (const host of [
      'api.localhost',
      'a.b.localhost',
      'localhost.',
      '10.0.0.7',
      '128.0.0.1',
      '::2',
      'example.com',
    ]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
    for (const host of ['localhost.example.com', '127.example.com']) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });
});

describe('DELIVERY_LEDGER_MODE', () => {
  it('reads both modes, redeliveries by default', () => {
    expect(loadConfig({ ENDPOINTS }).ledgerMode).toBe('redeliveries');
    expect(loadConfig({ ENDPOINTS, DELIVERY_LEDGER_MODE: ' redeliveries ' }).ledgerMode).toBe('redeliveries');
    expect(loadConfig({ ENDPOINTS, DELIVERY_LEDGER_MODE: 'every-delivery' }).ledgerMode).toBe('every-delivery');
  });

  it('rejects any other value, naming the variable and both modes', () => {
    for (const mode of ['always', 'Every-Delivery', 'redelivery']) {
      expectRejected(
        { ENDPOINTS, DELIVERY_LEDGER_MODE: mode },
        'DELIVERY_LEDGER_MODE',
        "use 'redeliveries' or 'every-delivery'",
      );
    }
  });
});
