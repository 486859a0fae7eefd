/**
 * Figure 10 (issue 16): one endpoint down for a while under a scaled-down in-flight ceiling, on the local stack (real
 * handler, local SQS, the emulated event source mappings), without lanes and with them, beside a run without outage.
 * Each run is its own process (outageRun.ts): the handler reads its configuration once.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type BenchOptions, log } from '../measure';
import type { OutagePlan, OutageRun } from '../outagePlan';

/** The short lane schedule of the runs (s): longer in all than the outage, so nothing is exhausted. */
export const OUTAGE_SCHEDULE = [5, 10, 20, 30, 60, 60];

/** The runs' settings; `--quick` halves the durations. */
export function outagePlans(options: BenchOptions): OutagePlan[] {
  const scale = options.quick ? 0.5 : 1;
  const base = {
    ratePerS: 20,
    warmupS: 15 * scale,
    windowS: 120 * scale,
    afterS: 15 * scale,
    // Scaled down from SQS's 120,000 so that today's path reaches it within the outage at this rate.
    ceiling: 1000 * scale,
    parkAfterS: 5,
    retrySchedule: OUTAGE_SCHEDULE,
    // Today's path backs a failing record off 10 s, doubling to 60 s (AWS: 10 s to 900 s).
    retryBaseDelayS: 10,
    retryMaxDelayS: 60,
    maxReceiveCount: 10,
    concurrency: 4,
    drainLimitS: 300,
  };
  return [
    { ...base, label: 'steady', lanes: true, outage: false },
    { ...base, label: 'no-lanes', lanes: false, outage: true },
    { ...base, label: 'lanes', lanes: true, outage: true },
  ];
}

function runOnce(plan: OutagePlan): Promise<OutageRun> {
  const script = fileURLToPath(new URL('../outageRun.ts', import.meta.url));
  // The bench runs under tsx: the child inherits its loader through execArgv.
  const child = fork(script, [JSON.stringify(plan)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    let result: OutageRun | undefined;
    child.on('message', (message: OutageRun) => {
      result = message;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (result) resolve(result);
      else reject(new Error(`outage run '${plan.label}' exited with code ${code} and no result (see stderr above)`));
    });
  });
}

export async function outage(options: BenchOptions): Promise<OutageRun[]> {
  const runs: OutageRun[] = [];
  for (const plan of outagePlans(options)) {
    log(`   ${plan.label}: ${plan.outage ? `audit down ${plan.windowS} s` : 'no outage'}, lanes ${plan.lanes}`);
    runs.push(await runOnce(plan));
  }
  return runs;
}
