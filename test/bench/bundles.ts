/**
 * esbuild builds of the handler as deployed (bundle, minify, platform node, target node24, ESM, tree-shaken,
 * `@aws-sdk/*` left to the Lambda runtime), of a baseline holding only the SQS client, and of the child-process entry
 * points the memory and logging figures run.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type BuildOptions, build, type Metafile, type Plugin } from 'esbuild';
import { parse } from 'yaml';
import { BUNDLE_DIR, ROOT } from './paths';

/** serverless.yml's `custom.esbuild`, read from the file so the bench builds what `npm run package` builds. */
function deployedBuild(): BuildOptions {
  const yml = parse(readFileSync(`${ROOT}serverless.yml`, 'utf8')) as { custom: { esbuild: Record<string, unknown> } };
  // `define` carries a stage's endpoints file through a Serverless variable; the bench sets ENDPOINTS instead.
  const { exclude, outputFileExtension: _ext, packager: _p, plugins, define: _d, ...options } = yml.custom.esbuild;
  // serverless-esbuild's `exclude` is esbuild's `external`; `plugins` names a CommonJS file exporting an array.
  return {
    ...(options as BuildOptions),
    external: (exclude as string[] | undefined) ?? [],
    ...(typeof plugins === 'string'
      ? { plugins: createRequire(import.meta.url)(`${ROOT}${plugins}`) as Plugin[] }
      : {}),
    logLevel: 'error',
  };
}

export const DEPLOYED_BUILD: BuildOptions = deployedBuild();

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
  const output = Object.entries(metafile.outputs).find(([file]) => path.endsWith(file.replace(/^(\.\.\/)+/, '')))?.[1];
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
  const ext = (extra.format ?? DEPLOYED_BUILD.format) === 'cjs' ? '.cjs' : '.mjs';
  const source: BuildOptions =
    'file' in entry
      ? { entryPoints: [`${ROOT}${entry.file}`] }
      : {
          stdin: { contents: entry.contents, resolveDir: `${ROOT}test/bench`, loader: 'ts', sourcefile: `${name}.ts` },
        };
  // With splitting (as serverless.yml builds the handler) esbuild writes a directory: the entry and its chunks.
  const splitting = 'file' in entry && (extra.splitting ?? DEPLOYED_BUILD.splitting) === true;
  const entryName = 'file' in entry ? basename(entry.file).replace(/\.[cm]?tsx?$/, '') : name;
  const target: BuildOptions = splitting
    ? { outdir: `${BUNDLE_DIR}/${name}`, entryNames: '[name]', outExtension: { '.js': ext }, splitting: true }
    : { outfile: `${BUNDLE_DIR}/${name}${ext}`, splitting: false };
  const outfile = splitting ? `${BUNDLE_DIR}/${name}/${entryName}${ext}` : `${BUNDLE_DIR}/${name}${ext}`;
  const result = await build({ ...DEPLOYED_BUILD, ...source, ...extra, ...target, metafile: true, write: true });
  return describe(outfile, result.metafile);
}

export type HostKind = 'handler' | 'naive' | 'powertools' | 'floor-undici' | 'floor-http';

/** The handler built with serverless.yml's settings and `extra` on top (another bundling choice, for cold start). */
export function bundleVariant(name: string, extra: BuildOptions): Promise<Bundle> {
  return bundle(name, { file: 'functions/ingest/handler.ts' }, extra);
}

export interface Bundles {
  handler: Bundle;
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
    return { handler, hosts, endpointServer: endpointServer.path };
  })();
  return built;
}
