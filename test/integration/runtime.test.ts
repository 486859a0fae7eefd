import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { listenForTest } from '../support/endpoints';
import { eventRecord, sqsEvent } from '../support/events';
import { packageCopy, ROOT } from '../support/package-stack';

// The packaged artifact as Lambda's nodejs24.x runtime runs it: AWS's runtime interface client (npm aws-lambda-ric,
// the client of the managed runtimes) on Node 24, against a loopback Runtime API. Node 24's runtime refuses
// callback-style handlers (three parameters) at init: the handler must be async with two.
const NODE24 = join(ROOT, 'node_modules/node24/bin/node');
const RIC = join(ROOT, 'node_modules/aws-lambda-ric/index.mjs');
const installed = existsSync(NODE24) && existsSync(RIC);
if (!installed && process.env.CI)
  throw new Error('CI needs node_modules/node24 and aws-lambda-ric: run npm ci on Linux x64');

const REQUEST_ID = 'c0ffee00-0000-4000-8000-000000000001';

interface RuntimeAnswer {
  path: string;
  body: string;
}

/** Lambda's Runtime API for one invocation: hands out `event` once, then holds the next poll; resolves the answer. */
async function runtimeApi(event: unknown): Promise<{ address: string; answer: Promise<RuntimeAnswer> }> {
  let resolveAnswer: (answer: RuntimeAnswer) => void = () => {};
  const answer = new Promise<RuntimeAnswer>((resolve) => {
    resolveAnswer = resolve;
  });
  let handedOut = false;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/2018-06-01/runtime/invocation/next') {
        if (handedOut) return; // The runtime's next poll waits until the environment is frozen: here, killed.
        handedOut = true;
        const body = JSON.stringify(event);
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'lambda-runtime-aws-request-id': REQUEST_ID,
          'lambda-runtime-deadline-ms': String(Date.now() + 60_000),
          'lambda-runtime-invoked-function-arn':
            'arn:aws:lambda:us-east-1:123456789012:function:ingest-fanout-dev-ingest',
        });
        res.end(body);
        return;
      }
      res.writeHead(202).end('{}');
      resolveAnswer({ path: req.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
    });
  });
  return { address: new URL(await listenForTest(server)).host, answer };
}

/**
 * Starts the runtime interface client on Node 24 with `handler` from `taskRoot`, as the runtime's bootstrap does, and
 * returns the Runtime API's answer, or fails with the process's output if it exits first.
 */
function runInRuntime(
  taskRoot: string,
  handler: string,
  api: { address: string; answer: Promise<RuntimeAnswer> },
  env: Record<string, string>,
): Promise<RuntimeAnswer> {
  const child = spawn(NODE24, [RIC], {
    cwd: taskRoot,
    env: {
      PATH: process.env.PATH ?? '',
      LAMBDA_TASK_ROOT: taskRoot,
      _HANDLER: handler,
      AWS_LAMBDA_RUNTIME_API: api.address,
      AWS_LAMBDA_FUNCTION_NAME: 'ingest-fanout-dev-ingest',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1024',
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_LOG_GROUP_NAME: '/aws/lambda/ingest-fanout-dev-ingest',
      AWS_LAMBDA_LOG_STREAM_NAME: '2026/12/06/[$LATEST]0123456789abcdef',
      // The client's native GET of the next invocation (aws-lambda-cpp over curl) never returns from a Node http
      // server here; its own Node HTTP client does that one call (answers still go through the native client).
      AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1: 'true',
      AWS_REGION: 'us-east-1',
      NODE_OPTIONS: '--enable-source-maps',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<never>((_, reject) =>
    child.on('exit', (code) => reject(new Error(`the runtime exited (${code}) before answering:\n${output}`))),
  );
  return Promise.race([api.answer, exited]);
}

let taskRoot: string;
let certDir: string;

beforeAll(async () => {
  if (!installed) return;
  taskRoot = mkdtempSync(join(tmpdir(), 'ingest-task-'));
  await packageCopy([], (out) => execFileSync('unzip', ['-q', join(out, 'ingest.zip'), '-d', taskRoot]));
  // A callback-style handler beside it: the runtime must refuse this one, so the check below is really applied.
  writeFileSync(
    join(taskRoot, 'callback.mjs'),
    'export const handler = (event, context, callback) => callback(null, {});\n',
  );
  // The deployed function may only reach https endpoints (or loopback http locally): serve TLS on loopback.
  certDir = mkdtempSync(join(tmpdir(), 'ingest-ric-tls-'));
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
      ...['-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-days', '1'],
      ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    ],
    { stdio: 'ignore' },
  );
}, 180_000);

afterAll(() => {
  for (const dir of [taskRoot, certDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A loopback https endpoint recording the CloudEvent ids it accepts. */
async function httpsEndpoint(): Promise<{ url: string; ids: string[] }> {
  const ids: string[] = [];
  const server = https.createServer(
    { key: readFileSync(join(certDir, 'key.pem')), cert: readFileSync(join(certDir, 'cert.pem')) },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        ids.push((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: string }).id);
        res.writeHead(200).end();
      });
    },
  );
  // listenForTest names the URL http://: this server speaks TLS on it.
  return { url: (await listenForTest(server)).replace(/^http:/, 'https:'), ids };
}

describe.runIf(installed)('the packaged artifact under the runtime interface client on Node 24', () => {
  it('answers an SQS batch: every event delivered, no failed record, the handler async with two parameters', async () => {
    const endpoint = await httpsEndpoint();
    const records = [eventRecord('ric-1'), eventRecord('ric-2')];
    const api = await runtimeApi(sqsEvent(records));
    const answer = await runInRuntime(taskRoot, 'functions/ingest/handler.handler', api, {
      ENDPOINTS: `audit=${endpoint.url}`,
      NODE_EXTRA_CA_CERTS: join(certDir, 'cert.pem'),
      POWERTOOLS_SERVICE_NAME: 'ingest-fanout',
      POWERTOOLS_METRICS_NAMESPACE: 'IngestFanout',
      POWERTOOLS_TRACE_ENABLED: 'false',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    });
    expect(answer.path).toBe(`/2018-06-01/runtime/invocation/${REQUEST_ID}/response`);
    expect(JSON.parse(answer.body)).toEqual({ batchItemFailures: [] });
    expect(endpoint.ids.sort()).toEqual(['ric-1', 'ric-2']);
  });

  it('refuses a callback-style handler at init, as Node 24 runtimes do (the check the handler passes above)', async () => {
    const api = await runtimeApi(sqsEvent([eventRecord('ric-3')]));
    const answer = await runInRuntime(taskRoot, 'callback.handler', api, {});
    expect(answer.path).toBe('/2018-06-01/runtime/init/error');
    expect(JSON.parse(answer.body)).toMatchObject({ errorType: 'Runtime.CallbackHandlerDeprecated' });
  });
});
