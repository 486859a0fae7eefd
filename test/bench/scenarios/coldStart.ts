/**
 * Figure 4: cold start. A fresh Node 24 process per measurement, from process start to the answer of a first 10-event
 * batch (3 loopback endpoints): the artifact exactly as `npm run package` builds it, the other bundling choices for
 * comparison, and a minimal handler that only imports @aws-sdk/client-sqs and answers empty.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { type Bundle, buildBundles, bundleVariant } from '../bundles';
import { sqsEvent } from '../events';
import type { EndpointFleet } from '../fleet';
import { type BenchOptions, log } from '../measure';
import { BUNDLE_DIR, CHILD_NODE, OUT_DIR, ROOT } from '../paths';
import { type Summary, summarize } from '../stats';
import { LOGS_ON_ENV, subjectEnv } from '../subject';

const run = promisify(execFile);

export const COLD_EVENTS = 10;
export const COLD_TARGET_RATIO = 1.3;
export const ARTIFACT_LIMIT_BYTES = 5_000_000;
const ARTIFACT_DIR = `${OUT_DIR}/artifact`;

export interface ColdRow {
  id: string;
  label: string;
  /** The bundle file's size (minified), when it is one file. */
  bytes?: number;
  /** Process start → module loaded (ms since the process's time origin). */
  loadMs: Summary;
  /** The first batch alone: handler call → answer. */
  firstBatchMs: Summary;
  /** Process start → answer of the first batch: the figure of the target. */
  totalMs: Summary;
  failed: number;
}

export interface ColdStart {
  rows: ColdRow[];
  /** The zip `npm run package` wrote. */
  artifactBytes: number;
  artifactFiles: string[];
  /** What the handler bundle holds, largest first. */
  byPackage: Bundle['byPackage'];
  processes: number;
  node: string;
}

// Runs in the fresh process: performance.now() counts from the process's start.
const COLD_RUNNER = `import { readFileSync, writeFileSync } from 'node:fs';
const [, , modulePath, eventFile, outFile] = process.argv;
const mod = await import(modulePath);
const loaded = performance.now();
const event = JSON.parse(readFileSync(eventFile, 'utf8'));
const deadline = Date.now() + 60_000;
const context = {
  callbackWaitsForEmptyEventLoop: false, functionName: 'ingest', functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:ingest', memoryLimitInMB: '512',
  awsRequestId: 'cold-start', logGroupName: '/aws/lambda/ingest', logStreamName: 'cold',
  getRemainingTimeInMillis: () => deadline - Date.now(),
};
const started = performance.now();
const answer = await mod.handler(event, context);
const answered = performance.now();
writeFileSync(outFile, JSON.stringify({ loaded, started, answered, failed: answer?.batchItemFailures?.length ?? -1 }));
process.exit(0);
`;

const MINIMAL_HANDLER = `import { SQSClient } from '@aws-sdk/client-sqs';
const sqs = new SQSClient({});
export const handler = async () => ({ batchItemFailures: [] });
`;

/** Runs `npm run package` (osls package) and unpacks its zip under .bench/, where @aws-sdk/* resolves as on Lambda. */
async function packagedArtifact(): Promise<{ entry: string; bytes: number; files: string[] }> {
  await run(`${ROOT}node_modules/.bin/osls`, ['package'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  const zip = `${ROOT}.serverless/ingest.zip`;
  const dir = `${ARTIFACT_DIR}/deployed`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await run('unzip', ['-q', '-o', zip, '-d', dir]);
  const { stdout } = await run('unzip', ['-Z1', zip]);
  const entry = stdout.split('\n').find((f) => /^functions\/ingest\/handler\.(mjs|cjs|js)$/.test(f));
  if (!entry) throw new Error(`${zip} holds no functions/ingest/handler.{mjs,cjs,js}: ${stdout}`);
  return { entry: `${dir}/${entry}`, bytes: readFileSync(zip).length, files: stdout.split('\n').filter(Boolean) };
}

interface Variant {
  id: string;
  label: string;
  entry: string;
  bytes?: number;
}

async function coldOnce(entry: string, env: Record<string, string>) {
  const out = `${BUNDLE_DIR}/cold-result.json`;
  rmSync(out, { force: true });
  await run(CHILD_NODE, [`${BUNDLE_DIR}/cold-runner.mjs`, entry, `${BUNDLE_DIR}/cold-event.json`, out], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(readFileSync(out, 'utf8')) as { loaded: number; started: number; answered: number; failed: number };
}

export async function coldStart(fleet: EndpointFleet, options: BenchOptions): Promise<ColdStart> {
  const { handler } = await buildBundles();
  mkdirSync(BUNDLE_DIR, { recursive: true });
  writeFileSync(`${BUNDLE_DIR}/cold-runner.mjs`, COLD_RUNNER);
  writeFileSync(`${BUNDLE_DIR}/cold-event.json`, JSON.stringify(sqsEvent(COLD_EVENTS)));
  writeFileSync(`${BUNDLE_DIR}/minimal-sqs.mjs`, MINIMAL_HANDLER);
  const artifact = await packagedArtifact();
  const sdkBundled = await bundleVariant('cold-sdk-bundled', { external: [] });
  const sdkExternal = await bundleVariant('cold-sdk-external', { external: ['@aws-sdk/*'] });
  const variants: Variant[] = [
    { id: 'deployed', label: 'handler, the artifact of `npm run package` (as deployed)', entry: artifact.entry },
    {
      id: 'sdk-bundled',
      label: 'handler, @aws-sdk/* bundled (ESM, minified)',
      entry: sdkBundled.path,
      bytes: sdkBundled.bytes,
    },
    {
      id: 'sdk-external',
      label: 'handler, @aws-sdk/* from the runtime (ESM, minified)',
      entry: sdkExternal.path,
      bytes: sdkExternal.bytes,
    },
    {
      id: 'minimal',
      label: 'minimal handler: imports @aws-sdk/client-sqs (from the runtime), answers empty',
      entry: `${BUNDLE_DIR}/minimal-sqs.mjs`,
    },
  ];
  // As deployed: INFO logs, EMF metrics, source maps; tracing off (no X-Ray daemon here).
  const env = { ...subjectEnv({ urls: fleet.urls, sqsEndpoint: fleet.sqsEndpoint }), ...LOGS_ON_ENV };
  await fleet.reset();
  await fleet.delays(fleet.urls.map(() => 0));
  const processes = options.quick ? 5 : 11;
  const samples = new Map(
    variants.map((v) => [v.id, { load: [] as number[], batch: [] as number[], total: [] as number[], failed: 0 }]),
  );
  // One unmeasured start each warms the OS file cache; then the variants alternate so drift hits all alike.
  for (const v of variants) await coldOnce(v.entry, env);
  for (let i = 0; i < processes; i++) {
    for (const v of variants) {
      const r = await coldOnce(v.entry, env);
      const s = samples.get(v.id)!;
      s.load.push(r.loaded);
      s.batch.push(r.answered - r.started);
      s.total.push(r.answered);
      s.failed = Math.max(s.failed, r.failed);
    }
  }
  const rows = variants.map((v) => {
    const s = samples.get(v.id)!;
    return {
      id: v.id,
      label: v.label,
      ...(v.bytes !== undefined ? { bytes: v.bytes } : {}),
      loadMs: summarize(s.load),
      firstBatchMs: summarize(s.batch),
      totalMs: summarize(s.total),
      failed: s.failed,
    };
  });
  log(
    `  cold start: ${rows.map((r) => `${r.id} ${r.totalMs.median.toFixed(0)} ms (load ${r.loadMs.median.toFixed(0)})`).join(', ')}`,
  );
  return {
    rows,
    artifactBytes: artifact.bytes,
    artifactFiles: artifact.files,
    byPackage: handler.byPackage,
    processes,
    node: CHILD_NODE,
  };
}
