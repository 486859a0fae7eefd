/**
 * esbuild builds of the handler as deployed (bundle, minify, platform node, target node22, ESM, tree-shaken,
 * `@aws-sdk/*` left to the Lambda runtime), of a baseline holding only the SQS client, and of the child-process entry
 * points the memory and logging figures run.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { type BuildOptions, build, type Metafile } from 'esbuild';
import { BUNDLE_DIR, ROOT } from './paths';

/** serverless.yml's `custom.esbuild` (serverless-esbuild's `exclude` is esbuild's `external`); keep them in step. */
export const DEPLOYED_BUILD: BuildOptions = {
  bundle: true,
  minify: true,
  platform: 'node',
  target: 'node22',
  format: 'esm',
  treeShaking: true,
  // A separate .map file (the function runs with NODE_OPTIONS=--enable-source-maps); not counted in the size.
  sourcemap: true,
  sourcesContent: false,
  mainFields: ['module', 'main'],
  external: ['@aws-sdk/*'],
  // CommonJS dependencies call require(); ESM output has none unless it is made.
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  logLevel: 'error',
};

export interface Bundle {
  path: string;
  bytes: number;
  gzipBytes: number;
  /** Bytes in the output per package (or 'project' for our own files), largest first. */
  byPackage: { name: string; bytes: number }[];
  /** @aws-sdk modules left external (the Lambda runtime provides them; loaded from node_modules at import). */
  externals: string[];
}

function packageOf(input: string): string {
  const at = input.lastIndexOf('node_modules/');
  if (at < 0) return 'project';
  const rest = input.slice(at + 'node_modules/'.length).split('/');
  return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? input);
}

function describe(path: string, metafile: Metafile): Bundle {
  const bytes = statSync(path).size;
  const output = Object.entries(metafile.outputs).find(([file]) => file.endsWith('.mjs'))?.[1];
  const totals = new Map<string, number>();
  for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
    const name = packageOf(input);
    totals.set(name, (totals.get(name) ?? 0) + bytesInOutput);
  }
  return {
    path,
    bytes,
    gzipBytes: gzipSync(readFileSync(path), { level: 9 }).length,
    byPackage: [...totals].map(([name, b]) => ({ name, bytes: b })).sort((a, b) => b.bytes - a.bytes),
    externals: [
      ...new Set(
        (output?.imports ?? []).filter((i) => i.external && i.path.startsWith('@aws-sdk/')).map((i) => i.path),
      ),
    ],
  };
}

async function bundle(name: string, entry: { file: string } | { contents: string }, extra: BuildOptions = {}) {
  mkdirSync(BUNDLE_DIR, { recursive: true });
  const outfile = `${BUNDLE_DIR}/${name}.mjs`;
  const source: BuildOptions =
    'file' in entry
      ? { entryPoints: [`${ROOT}${entry.file}`] }
      : {
          stdin: { contents: entry.contents, resolveDir: `${ROOT}test/bench`, loader: 'ts', sourcefile: `${name}.ts` },
        };
  const result = await build({ ...DEPLOYED_BUILD, ...source, ...extra, outfile, metafile: true, write: true });
  return describe(outfile, result.metafile);
}

export type HostKind = 'handler' | 'naive' | 'powertools' | 'floor-undici' | 'floor-http';

export interface Bundles {
  handler: Bundle;
  /** The handler with the AWS SDK bundled in too (nothing external): the other side of serverless.yml's trade-off. */
  handlerSdkBundled: Bundle;
  sqsOnly: Bundle;
  /** One runner host per runner (host.ts + the runner), each run in its own process. */
  hosts: Record<HostKind, string>;
  /** endpointServer.ts, run by the fleet's child process. */
  endpointServer: string;
}

const HOST_ENTRIES: Record<HostKind, string> = {
  handler: `import { handler } from '../../functions/ingest/handler';
import { serve } from './host';
serve((event, context) => handler(event, context));`,
  naive: `import { naiveRunner } from './peers/naive';
import { serve, urlsFromEnv } from './host';
serve(naiveRunner(urlsFromEnv()).handle);`,
  powertools: `import { powertoolsRunner } from './peers/powertools';
import { serve, urlsFromEnv } from './host';
serve(powertoolsRunner(urlsFromEnv()).handle);`,
  'floor-undici': `import { floorUndiciRunner } from './peers/floorUndici';
import { serve, urlsFromEnv } from './host';
serve(floorUndiciRunner(urlsFromEnv(), Number(process.env.BENCH_CONNECTIONS)).handle);`,
  'floor-http': `import { floorHttpRunner } from './peers/floorHttp';
import { serve, urlsFromEnv } from './host';
serve(floorHttpRunner(urlsFromEnv(), Number(process.env.BENCH_CONNECTIONS)).handle);`,
};

let built: Promise<Bundles> | undefined;

/** Builds everything once per bench run (a few seconds). */
export function buildBundles(): Promise<Bundles> {
  built ??= (async () => {
    const handler = await bundle('handler', { file: 'functions/ingest/handler.ts' });
    const handlerSdkBundled = await bundle(
      'handler-sdk-bundled',
      { file: 'functions/ingest/handler.ts' },
      { external: [] },
    );
    // The baseline: a function that only creates an SQS client, with the SDK bundled in (nothing external).
    const sqsOnly = await bundle(
      'sqs-only',
      {
        contents: `import { SQSClient, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
export const client = new SQSClient({ region: 'us-east-1' });
export const command = SendMessageBatchCommand;`,
      },
      { external: [] },
    );
    const hosts = {} as Record<HostKind, string>;
    for (const [kind, contents] of Object.entries(HOST_ENTRIES) as [HostKind, string][]) {
      // Deployed settings, only the identifiers stay readable so that CPU profiles name functions.
      hosts[kind] = (
        await bundle(
          `host-${kind}`,
          { contents },
          { minify: false, minifyWhitespace: true, minifySyntax: true, minifyIdentifiers: false },
        )
      ).path;
    }
    const endpointServer = await bundle('endpoint-server', { file: 'test/bench/endpointServer.ts' });
    return { handler, handlerSdkBundled, sqsOnly, hosts, endpointServer: endpointServer.path };
  })();
  return built;
}
