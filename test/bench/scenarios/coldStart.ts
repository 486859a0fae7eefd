/** Figure 4: the handler bundle's size and module load time, beside a bundle holding only the SQS client. */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { type Bundle, buildBundles } from '../bundles';
import type { BenchOptions } from '../measure';
import { log } from '../measure';
import { BUNDLE_DIR, CHILD_NODE, ROOT } from '../paths';
import { type Summary, summarize } from '../stats';
import { subjectEnv } from '../subject';

const run = promisify(execFile);

export const BUNDLE_TARGET_BYTES = 250_000;

export interface ColdStart {
  handler: Bundle;
  handlerSdkBundled: Bundle;
  handlerSdkBundledLoadMs: Summary;
  sqsOnly: Bundle;
  handlerLoadMs: Summary;
  /** Only the external @aws-sdk modules the handler bundle imports, loaded the same way. */
  externalsLoadMs: Summary;
  /** Only @aws-sdk/client-sqs from the runtime's node_modules: what the SDK part would cost if the rest loaded lazily. */
  sqsExternalLoadMs: Summary;
  /** With NODE_OPTIONS=--enable-source-maps, as serverless.yml deploys it. */
  handlerLoadMsSourceMaps: Summary;
  sqsOnlyLoadMs: Summary;
  node: string;
}

const LOADER = `const started = performance.now();
await import(process.argv[2]);
process.stdout.write(String(performance.now() - started));
`;

async function loadOnce(bundle: string, env: Record<string, string>): Promise<number> {
  const loader = `${BUNDLE_DIR}/load.mjs`;
  const { stdout } = await run(CHILD_NODE, [loader, bundle], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  return Number(stdout);
}

export async function coldStart(options: BenchOptions): Promise<ColdStart> {
  const { handler, handlerSdkBundled, sqsOnly } = await buildBundles();
  writeFileSync(`${BUNDLE_DIR}/load.mjs`, LOADER);
  const externals = `${BUNDLE_DIR}/externals.mjs`;
  writeFileSync(externals, handler.externals.map((e) => `import '${e}';\n`).join(''));
  const sqsExternal = `${BUNDLE_DIR}/sqs-external.mjs`;
  writeFileSync(sqsExternal, "import '@aws-sdk/client-sqs';\n");
  // The handler reads its configuration at import; any valid loopback endpoints will do, nothing is sent.
  const deployedEnv = subjectEnv({
    urls: ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b'],
    sqsEndpoint: 'http://127.0.0.1:9',
  });
  const env = { ...deployedEnv, NODE_OPTIONS: '' };
  const rounds = options.quick ? 5 : 11;
  const handlerMs: number[] = [];
  const handlerMapsMs: number[] = [];
  const externalsMs: number[] = [];
  const sqsExternalMs: number[] = [];
  const sdkBundledMs: number[] = [];
  const sqsMs: number[] = [];
  // One unmeasured load each warms the OS file cache; then the two alternate so drift hits both alike.
  await loadOnce(handler.path, env);
  await loadOnce(sqsOnly.path, env);
  for (let i = 0; i < rounds; i++) {
    handlerMs.push(await loadOnce(handler.path, env));
    handlerMapsMs.push(await loadOnce(handler.path, deployedEnv));
    externalsMs.push(await loadOnce(externals, env));
    sqsExternalMs.push(await loadOnce(sqsExternal, env));
    sdkBundledMs.push(await loadOnce(handlerSdkBundled.path, env));
    sqsMs.push(await loadOnce(sqsOnly.path, env));
  }
  const result = {
    handler,
    sqsOnly,
    handlerLoadMs: summarize(handlerMs),
    handlerSdkBundled,
    handlerSdkBundledLoadMs: summarize(sdkBundledMs),
    handlerLoadMsSourceMaps: summarize(handlerMapsMs),
    externalsLoadMs: summarize(externalsMs),
    sqsExternalLoadMs: summarize(sqsExternalMs),
    sqsOnlyLoadMs: summarize(sqsMs),
    node: CHILD_NODE,
  };
  log(
    `  handler bundle ${handler.bytes} B, loads in ${result.handlerLoadMs.median.toFixed(1)} ms; SQS-only ${sqsOnly.bytes} B, ${result.sqsOnlyLoadMs.median.toFixed(1)} ms`,
  );
  return result;
}
