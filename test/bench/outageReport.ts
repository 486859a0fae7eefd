/** Table 10 of `npm run bench`: the outage runs (scenarios/outage.ts) side by side. */
import { DOWN_ENDPOINT, type OutageRun } from './outagePlan';
import { outageCost } from './prices';
import { markdownTable } from './stats';

/** Issue 16: with lanes, the healthy endpoints get at least this share of their pace without the outage. */
export const OUTAGE_PACE_TARGET = 0.9;

const mark = (ok: boolean) => (ok ? 'met' : '**missed**');
const rate = (v: number) => v.toFixed(1);

function healthyPace(run: OutageRun): number {
  const healthy = run.window.filter((e) => e.name !== DOWN_ENDPOINT);
  return healthy.reduce((sum, e) => sum + e.perSecond, 0) / Math.max(1, healthy.length);
}

function heading(run: OutageRun): string {
  const { plan } = run;
  return plan.outage ? `${DOWN_ENDPOINT} down, ${plan.lanes ? 'with lanes' : 'no lanes (today)'}` : 'no outage (lanes)';
}

function inFlight(run: OutageRun, lane: (name: string) => boolean): string {
  const queues = run.queues.filter((q) => lane(q.queue));
  if (queues.length === 0) return '—';
  return queues
    .map((q) => `${q.maxInFlight}${q.ceilingHits > 0 ? ` (ceiling reached: ${q.ceilingHits} empty receives)` : ''}`)
    .join(' / ');
}

/** What prices.ts's cost model predicts for the run: parked at the first failure, attempts on the schedule. */
function modelReceives(run: OutageRun): number {
  const cost = outageCost(run.plan.retrySchedule, run.plan.ratePerS, run.plan.windowS);
  return cost.ops.receives / cost.parked;
}

function rows(runs: OutageRun[], steady: number): string[][] {
  const endpoint = (run: OutageRun, name: string) => run.report.endpoints?.find((e) => e.name === name);
  const isLane = (name: string) => name.includes('-lane-');
  const isDownLane = (name: string) => name.endsWith(`-lane-${DOWN_ENDPOINT}`);
  const healthyDuplicates = (run: OutageRun) =>
    (run.report.endpoints ?? []).filter((e) => e.name !== DOWN_ENDPOINT).map((e) => e.duplicates);
  return [
    ['events/s reaching each healthy endpoint in the window (mean)', ...runs.map((r) => rate(healthyPace(r)))],
    ['÷ the pace without outage', ...runs.map((r) => (steady > 0 ? `${(healthyPace(r) / steady).toFixed(2)}×` : '—'))],
    [
      `events/s reaching ${DOWN_ENDPOINT} in the window`,
      ...runs.map((r) => rate(r.window.find((e) => e.name === DOWN_ENDPOINT)?.perSecond ?? 0)),
    ],
    ['largest in-flight count, source queue', ...runs.map((r) => inFlight(r, (q) => !isLane(q)))],
    [`largest in-flight count, ${DOWN_ENDPOINT}'s lane`, ...runs.map((r) => inFlight(r, isDownLane))],
    ['largest in-flight count, the healthy lanes', ...runs.map((r) => inFlight(r, (q) => isLane(q) && !isDownLane(q)))],
    ['DLQ: most messages seen (nothing consumes it)', ...runs.map((r) => String(r.dlqMaxMessages))],
    [
      `events parked for ${DOWN_ENDPOINT} · lane receives per parked event`,
      ...runs.map((r) => (r.parked > 0 ? `${r.parked} · ${(r.laneReceives / r.parked).toFixed(2)}` : '0')),
    ],
    [
      "lane receives per parked event, computed by table 11's model (attempts on time)",
      ...runs.map((r) => (r.parked > 0 ? modelReceives(r).toFixed(2) : '—')),
    ],
    [
      `${DOWN_ENDPOINT}'s lane: invocations · records per invocation (a lane busy all along has full batches)`,
      ...runs.map((r) =>
        r.laneInvocations > 0 ? `${r.laneInvocations} · ${(r.laneReceives / r.laneInvocations).toFixed(1)}` : '—',
      ),
    ],
    [
      `${DOWN_ENDPOINT} has every event sent before the recovery, s after it`,
      ...runs.map((r) => (!r.plan.outage ? '—' : r.backlogDrainedS === null ? 'never' : r.backlogDrainedS.toFixed(1))),
    ],
    ['extra copies at the healthy endpoints', ...runs.map((r) => healthyDuplicates(r).join(' / '))],
    [`extra copies at ${DOWN_ENDPOINT}`, ...runs.map((r) => String(endpoint(r, DOWN_ENDPOINT)?.duplicates ?? '—'))],
    ['events sent · lost', ...runs.map((r) => `${r.sent} · ${r.report.lost}`)],
    [
      'everything drained · run time',
      ...runs.map((r) => `${r.report.drained ? 'yes' : 'no'} · ${r.elapsedS.toFixed(0)} s`),
    ],
  ];
}

export function outageSection(runs: OutageRun[]): string[] {
  const plan = runs[0]?.plan;
  if (!plan) return [];
  const steadyRun = runs.find((r) => !r.plan.outage);
  const steady = steadyRun ? healthyPace(steadyRun) : 0;
  const lanes = runs.find((r) => r.plan.outage && r.plan.lanes);
  // The issue's bound: rate × (invocation time + PARK_AFTER_S) plus a batch; the function timeout bounds an invocation.
  const bound = plan.ratePerS * (5 + plan.parkAfterS) + 10;
  const lines = [
    `### 10. One endpoint down: ${plan.ratePerS} events/s for ${plan.warmupS + plan.windowS + plan.afterS} s, ${DOWN_ENDPOINT} answering 5xx for the ${plan.windowS} s window after ${plan.warmupS} s, in-flight ceiling ${plan.ceiling} per queue (local stack)`,
    '',
    markdownTable(['', ...runs.map(heading)], rows(runs, steady)),
    '',
    `Settings: the local stack (the real handler, local SQS, emulated event source mappings: source batches of 10 with ${plan.concurrency} pollers, lanes batches of 10 with 2), function timeout 5 s, the delivery ledger on (dynalite) as deployed; today's path backs a failing record off ${plan.retryBaseDelayS} s doubling to ${plan.retryMaxDelayS} s (AWS default: 10 s to 900 s), maxReceiveCount ${plan.maxReceiveCount}; lanes: PARK_AFTER_S=${plan.parkAfterS}, retrySchedule [${plan.retrySchedule.join(', ')}] s. In-flight counts are read by each mapping before its receives; the DLQ's by sampling every 250 ms.`,
  ];
  // A run without outage that falls behind the rate measured the machine, not the lanes: the ratios then mislead.
  if (steadyRun && steady < OUTAGE_PACE_TARGET * plan.ratePerS) {
    lines.push(
      '',
      `**The run without outage did not keep up** (${rate(steady)} of ${plan.ratePerS} events/s): the machine was too busy for this rate, so the comparison below is not a measure of lanes.`,
    );
  }
  if (lanes) {
    const pace = steady > 0 ? healthyPace(lanes) / steady : 0;
    const source = lanes.queues.find((q) => !q.queue.includes('-lane-'));
    const ceilingHits = lanes.queues.reduce((sum, q) => sum + q.ceilingHits, 0);
    lines.push(
      '',
      `Targets (issue 16), with lanes: healthy endpoints within ${Math.round((1 - OUTAGE_PACE_TARGET) * 100)} % of their pace without outage: ${pace.toFixed(2)}×, ${mark(pace >= OUTAGE_PACE_TARGET)}; the ceiling never reached: ${mark(ceilingHits === 0)}; source in-flight below rate × (invocation time + PARK_AFTER_S) + a batch = ${bound}: ${source?.maxInFlight ?? '—'}, ${mark((source?.maxInFlight ?? Infinity) < bound)}; 0 lost: ${mark(lanes.report.lost === 0 && lanes.report.drained)}.`,
    );
  }
  return lines;
}
