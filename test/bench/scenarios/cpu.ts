/**
 * Figure 6: per-event CPU cost of the handler itself. Two measurements over batches of 2,000 events to instant
 * endpoints, each runner in its own process: process CPU time per event (no profiler) for the handler and the floors,
 * and sampling profiles of the handler and the undici floor (the same client) whose self time is attributed to the code that caused
 * it (see `categorize`), mapped back to source files through the bundles' source maps.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Bundles } from '../bundles';
import type { EndpointFleet } from '../fleet';
import type { RunnerHost } from '../hostProcess';
import { type BenchOptions, log, timedRun } from '../measure';
import { OUT_DIR, ROOT } from '../paths';
import { type Summary, summarize } from '../stats';

export const CPU_EVENTS = 2000;
export const PROFILE_FILE = `${OUT_DIR}/handler.cpuprofile`;
export const FLOOR_PROFILE_FILE = `${OUT_DIR}/floor-undici.cpuprofile`;

export type Category =
  | 'lib'
  | 'zod'
  | 'cockatiel'
  | 'powertools'
  | 'http-client'
  | 'node-io'
  | 'gc'
  | 'program'
  | 'bench'
  | 'other';

export const CATEGORY_LABELS: Record<Category, string> = {
  lib: 'lib/ + functions/ code (with the built-ins it calls: JSON, crypto, Buffer)',
  zod: 'zod (schema validation)',
  cockatiel: 'cockatiel (bulkhead, circuit breaker)',
  powertools: 'Powertools + middy',
  'http-client': 'HTTP client: undici, and node:http calls made by our code (request, headers, write, parsing)',
  'node-io': 'Node internals with no caller of ours (socket reads, HTTP parsing, timers, promise jobs)',
  gc: 'garbage collector',
  program: '(program): V8 and native work not attributed to a function',
  bench: "the floor's own code (test/bench/peers)",
  other: 'other',
};

/** The handler's own work: what the floor does not do. */
export const OWN: Category[] = ['lib', 'zod', 'cockatiel', 'powertools'];

export interface CpuResult {
  events: number;
  runs: number;
  /** Process CPU time (user + system) per event, µs, without the profiler. */
  perEventUs: { id: string; label: string; us: Summary }[];
  /** Sampled main-thread self time per event, µs, by category (idle excluded); the floor's beside the handler's. */
  profile: { category: Category; label: string; usPerEvent: number; floorUsPerEvent: number }[];
  floorLabel: string;
  /** The lib/ functions with the most attributed time, µs per event. */
  topLib: { fn: string; usPerEvent: number }[];
  sampleIntervalUs: number;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Maps a frame of the inproc bundle back to the source file it came from, through the bundle's source map. */
class Sources {
  readonly #bundleUrl: string;
  readonly #dir: string;
  readonly #map: SourceMap;
  readonly #cache = new Map<string, string | undefined>();

  constructor(bundle: string) {
    this.#bundleUrl = pathToFileURL(bundle).href;
    this.#dir = dirname(bundle);
    this.#map = new SourceMap(JSON.parse(readFileSync(`${bundle}.map`, 'utf8')));
  }

  /** The absolute path of the frame's source file; undefined for Node internals and built-ins. */
  path(frame: ProfileNode['callFrame']): string | undefined {
    if (!frame.url.startsWith('file:')) return undefined;
    if (frame.url !== this.#bundleUrl) return fileURLToPath(frame.url);
    const key = `${frame.lineNumber}:${frame.columnNumber}`;
    if (!this.#cache.has(key)) {
      const entry = this.#map.findEntry(frame.lineNumber, frame.columnNumber);
      const source = 'originalSource' in entry ? entry.originalSource : undefined;
      this.#cache.set(key, source ? resolve(this.#dir, source.replace(/^file:\/\//, '')) : undefined);
    }
    return this.#cache.get(key);
  }
}

function owner(path: string | undefined): Category | undefined {
  if (!path) return undefined;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const pkg = path.slice(nm + '/node_modules/'.length);
    if (pkg.startsWith('zod/')) return 'zod';
    if (pkg.startsWith('cockatiel/')) return 'cockatiel';
    if (pkg.startsWith('@aws-lambda-powertools/') || pkg.startsWith('@middy/')) return 'powertools';
    if (pkg.startsWith('undici/')) return 'http-client';
    return 'other';
  }
  if (path.startsWith(`${ROOT}lib/`) || path.startsWith(`${ROOT}functions/`)) return 'lib';
  if (path.startsWith(`${ROOT}test/`)) return 'bench';
  return 'other';
}

const HTTP_INTERNAL = /^node:(_http_|http|https|net|_tls|tls|stream|internal\/(http|net|stream|streams\/|stream_base))/;

/**
 * Walks from the sampled frame towards the root to the first frame of a file we can name (ours or a package's):
 * built-ins and Node internals count for whoever called them, except that Node's HTTP client machinery called from
 * lib/ counts as the HTTP client (the floor pays it too). A sample with no such frame is Node's own I/O work.
 */
function categorize(
  leaf: ProfileNode,
  parents: Map<number, ProfileNode>,
  sources: Sources,
): { category: Category; frame?: ProfileNode; path?: string } {
  const name = leaf.callFrame.functionName;
  if (name === '(garbage collector)') return { category: 'gc' };
  if (name === '(program)') return { category: 'program' };
  let throughHttp = false;
  for (let node: ProfileNode | undefined = leaf; node; node = parents.get(node.id)) {
    const path = sources.path(node.callFrame);
    const found = owner(path);
    if (found) {
      if (throughHttp && (found === 'lib' || found === 'cockatiel' || found === 'bench'))
        return { category: 'http-client' };
      return { category: found, frame: node, ...(path ? { path } : {}) };
    }
    if (HTTP_INTERNAL.test(node.callFrame.url)) throughHttp = true;
  }
  return { category: 'node-io' };
}

function analyze(profile: Profile, events: number, sources: Sources) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node);
  const totals = new Map<Category, number>();
  const libFns = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const leaf = byId.get(profile.samples[i]!)!;
    const name = leaf.callFrame.functionName;
    if (name === '(idle)' || name === '(root)') continue;
    // A sample stands for the time until the next one.
    const us = profile.timeDeltas[i + 1] ?? 0;
    const { category, frame, path } = categorize(leaf, parents, sources);
    totals.set(category, (totals.get(category) ?? 0) + us);
    if (category === 'lib' && frame && path) {
      const file = path.slice(ROOT.length);
      const key = `${file} ${frame.callFrame.functionName || '(anonymous)'}`;
      libFns.set(key, (libFns.get(key) ?? 0) + us);
    }
  }
  return {
    totals: new Map([...totals].map(([category, us]) => [category, us / events])),
    topLib: [...libFns]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([fn, us]) => ({ fn, usPerEvent: us / events })),
  };
}

export async function cpuProfile(
  fleet: EndpointFleet,
  runners: RunnerHost[],
  bundles: Bundles,
  options: BenchOptions,
): Promise<CpuResult> {
  const measured = runners.filter((r) => r.id === 'handler' || r.id.startsWith('floor'));
  const handler = measured.find((r) => r.id === 'handler')!;
  // The handler's client is undici's Pool: its floor is the one with the same client.
  const floor = measured.find((r) => r.id === 'floor-undici')!;
  await fleet.reset();
  await fleet.delays(fleet.urls.map(() => 0));
  for (const runner of measured) await timedRun(runner, fleet, CPU_EVENTS);

  const cpu = new Map<string, number[]>(measured.map((r) => [r.id, []]));
  const rounds = Math.min(options.runs, 3);
  for (let round = 0; round < rounds; round++) {
    for (const runner of measured) {
      const run = await timedRun(runner, fleet, CPU_EVENTS);
      cpu.get(runner.id)!.push(run.cpuUs / CPU_EVENTS);
    }
  }

  const sampleIntervalUs = 100;
  const profile = (await handler.profile(CPU_EVENTS, rounds, sampleIntervalUs)) as Profile;
  const floorProfile = (await floor.profile(CPU_EVENTS, rounds, sampleIntervalUs)) as Profile;
  // Kept for a closer look: Chrome DevTools (Performance tab) or VS Code open .cpuprofile files.
  writeFileSync(PROFILE_FILE, JSON.stringify(profile));
  writeFileSync(FLOOR_PROFILE_FILE, JSON.stringify(floorProfile));
  const analysis = analyze(profile, CPU_EVENTS * rounds, new Sources(bundles.hosts.handler));
  const floorAnalysis = analyze(floorProfile, CPU_EVENTS * rounds, new Sources(bundles.hosts['floor-undici']));
  const categories = [...new Set([...analysis.totals.keys(), ...floorAnalysis.totals.keys()])];
  const result: CpuResult = {
    events: CPU_EVENTS,
    runs: rounds,
    perEventUs: measured.map((r) => ({ id: r.id, label: r.label, us: summarize(cpu.get(r.id)!) })),
    profile: categories
      .map((category) => ({
        category,
        label: CATEGORY_LABELS[category],
        usPerEvent: analysis.totals.get(category) ?? 0,
        floorUsPerEvent: floorAnalysis.totals.get(category) ?? 0,
      }))
      .sort((a, b) => b.usPerEvent - a.usPerEvent),
    floorLabel: floor.label,
    topLib: analysis.topLib,
    sampleIntervalUs,
  };
  const own = result.profile.filter((p) => OWN.includes(p.category)).reduce((s, p) => s + p.usPerEvent, 0);
  log(
    `  CPU/event: ${result.perEventUs.map((p) => `${p.id} ${p.us.median.toFixed(1)} µs`).join(', ')}; handler's own work ≈ ${own.toFixed(1)} µs/event (profile)`,
  );
  return result;
}
