/**
 * `npm run bench [-- --quick] [-- --only=throughput,slow,deadline,coldstart,memory,cpu,instance,shaping,outage] [-- --runs=N]`
 *
 * Runs the real handler (its deployed bundle, in its own process) against loopback endpoints served by a separate
 * process, beside two peers and the floor (each in its own process too),
 * and prints Markdown tables (also written to .bench/results.md, raw figures to .bench/results.json).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildBundles } from './bundles';
import { EndpointFleet } from './fleet';
import { RunnerHost } from './hostProcess';
import { machine } from './machine';
import { type BenchOptions, log } from './measure';
import { OUT_DIR } from './paths';
import { type Results, report } from './report';
import { coldStart } from './scenarios/coldStart';
import { cpuProfile } from './scenarios/cpu';
import { deadline } from './scenarios/deadline';
import { fdLimit } from './scenarios/fdLimit';
import { instance } from './scenarios/instance';
import { memory } from './scenarios/memory';
import { outage } from './scenarios/outage';
import { shaping } from './scenarios/shaping';
import { slowEndpoint } from './scenarios/slow';
import { deployedHandlerSpec, KINDS, throughput, throughputTls } from './scenarios/throughput';
import { hostSpec } from './subject';
import { ensureCertificate } from './tls';

const SCENARIOS = [
  'throughput',
  'slow',
  'deadline',
  'coldstart',
  'memory',
  'cpu',
  'instance',
  'shaping',
  'outage',
] as const;
type Scenario = (typeof SCENARIOS)[number];
// The outage runs take about 10 minutes of wall time: only when asked for, so the full run stays under 15 minutes.
const OPT_IN: readonly Scenario[] = ['outage'];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    runs: { type: 'string' },
    sizes: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`npm run bench -- [--quick] [--only=${SCENARIOS.join(',')}] [--runs=N] [--sizes=2000,10000]
  --quick   2,000-event batches over http only, 2 runs per cell, 5 cold processes per row (under 5 minutes)
  --only    comma-separated scenarios (default: all but ${OPT_IN.join(', ')}; --only=outage runs table 10, about 10 min)
  --runs    measured runs per cell (default 5, quick 2)
  --sizes   batch sizes for the throughput scenario (default 2000,10000; quick 2000)`);
  process.exit(0);
}

const only = new Set<Scenario>(
  values.only
    ? (values.only.split(',').map((s) => s.trim()) as Scenario[])
    : SCENARIOS.filter((s) => !OPT_IN.includes(s)),
);
for (const s of only) {
  if (!SCENARIOS.includes(s)) {
    console.error(`--only: unknown scenario '${s}'; choose from ${SCENARIOS.join(', ')}`);
    process.exit(2);
  }
}
const options: BenchOptions = {
  quick: values.quick,
  runs: values.runs ? Number(values.runs) : values.quick ? 2 : 5,
};
const sizes = values.sizes ? values.sizes.split(',').map(Number) : values.quick ? [2000] : [2000, 10_000];
if (!Number.isInteger(options.runs) || options.runs < 1 || sizes.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error('--runs and --sizes take positive whole numbers, e.g. --runs=5 --sizes=2000,10000');
  process.exit(2);
}

async function main(): Promise<void> {
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const started = Date.now();
  const host = machine();
  log(`bench: ${host.cpu} × ${host.cores}, Node ${host.node} (runners: ${host.childNode}), load ${host.loadavg}`);
  const results: Results = {
    command,
    date: new Date().toISOString().slice(0, 16).replace('T', ' '),
    machine: host,
    options: { ...options, sizes },
  };
  const bundles = await buildBundles();
  const cert = ensureCertificate();
  if (!cert) log('no openssl: the https cell of the batch-time table is skipped');
  const fleet = await EndpointFleet.start(3, bundles.endpointServer, cert);
  const runners: RunnerHost[] = [];
  try {
    const needRunners = ['throughput', 'slow', 'deadline', 'cpu'].some((s) => only.has(s as Scenario));
    if (needRunners) {
      for (const kind of KINDS) runners.push(await RunnerHost.start(hostSpec(kind, bundles, fleet)));
    }
    if (only.has('throughput')) {
      log('1. batch time');
      // The handler as deployed (INFO logs, EMF metrics) beside the same handler with both off.
      const deployed = await RunnerHost.start(deployedHandlerSpec(bundles, fleet));
      try {
        const all = [runners[0]!, deployed, ...runners.slice(1)];
        results.throughput = await throughput(fleet, all, sizes, [0, 5], options);
      } finally {
        await deployed.close();
      }
      // --quick leaves https out, to stay under 5 minutes.
      if (cert && !options.quick) {
        results.throughput.push(...(await throughputTls(fleet, bundles, cert, sizes, [0, 5], options)));
      }
      const limited = await fdLimit(fleet, bundles);
      if (limited) results.fdLimit = limited;
    }
    if (only.has('slow')) {
      log('2. slow endpoint');
      results.slow = await slowEndpoint(fleet, runners, bundles, options);
    }
    if (only.has('deadline')) {
      log('3. deadline');
      results.deadline = await deadline(fleet, runners, bundles, options);
    }
    if (only.has('cpu')) {
      log('6. CPU per event');
      results.cpu = await cpuProfile(fleet, runners, bundles, options);
    }
    if (only.has('instance')) {
      log('7. throughput per instance and cost');
      results.instance = await instance(fleet, bundles, options);
    }
    // The long-lived runners go before the fresh processes below run, so those measure alone.
    await Promise.all(runners.splice(0).map((r) => r.close()));
    if (only.has('coldstart')) {
      log('4. cold start');
      results.coldStart = await coldStart(fleet, options);
    }
    if (only.has('memory')) {
      log('5. memory');
      results.memory = await memory(fleet, bundles, options);
    }
    if (only.has('outage')) {
      log('10. one endpoint down, without and with lanes');
      results.outage = await outage(options);
    }
    if (only.has('shaping')) {
      log('9. request shaping');
      results.shaping = shaping(options);
    }
  } finally {
    await Promise.all(runners.map((r) => r.close()));
    await fleet.stop();
  }
  results.elapsedS = Math.round((Date.now() - started) / 1000);
  const markdown = report(results);
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(`${OUT_DIR}/results.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${OUT_DIR}/results.md`, `${markdown}\n`);
  console.log(markdown);
  log(`bench: done in ${results.elapsedS} s; tables in .bench/results.md, raw figures in .bench/results.json`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
