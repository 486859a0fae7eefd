/**
 * One run of the outage scenario (scenarios/outage.ts forks this file once per variant): the local stack with the
 * real handler, events sent at a steady rate, one demo endpoint down for a while, then recovery and the drain.
 * A separate process per run, because the handler reads its configuration once, at import.
 * Argument: the OutagePlan as JSON; answer: one OutageRun message over IPC.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DemoEndpoint, FaultPlan } from '../../infra/local/demo-endpoints';
import { DrainWatch } from '../../infra/local/drain';
import { newRunId, type SampleMessage, sendMessages, validMessages } from '../../infra/local/events';
import { HandlerOutput } from '../../infra/local/handler-output';
import { type LocalStack, startLocalStack } from '../../infra/local/stack';
import { DOWN_ENDPOINT, OUTAGE_ENDPOINTS, type OutagePlan, type OutageRun } from './outagePlan';
import { OUT_DIR } from './paths';

const DOWN: FaultPlan = { rate: 1, kinds: ['error'] };
const TICK_MS = 100;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An endpoints file naming the three demo endpoints, each with the plan's retry schedule. */
function endpointsFile(dir: string, schedule: number[]): string {
  const path = join(dir, 'endpoints.yaml');
  const endpoints = OUTAGE_ENDPOINTS.map((name) => ({
    name,
    url: `https://${name}.example.com/events`,
    retrySchedule: schedule,
  }));
  writeFileSync(path, JSON.stringify({ endpoints }));
  return path;
}

/** Sends `ratePerS` events a second until `until` (ms since epoch), appending what it sent to `sent`. */
async function produce(stack: LocalStack, ratePerS: number, until: number, sent: SampleMessage[]): Promise<void> {
  const run = newRunId();
  const start = Date.now();
  let count = 0;
  while (Date.now() < until) {
    const due = Math.floor(((Date.now() - start) / 1000) * ratePerS);
    if (due > count) {
      const batch = validMessages(due - count, run, count);
      count = due;
      await sendMessages(stack.sqs.client, stack.sqs.queue.url, batch);
      sent.push(...batch);
    }
    await sleep(TICK_MS);
  }
}

/** Watches DOWN_ENDPOINT catching up on the events sent before `since`, and the DLQ's depth, until stopped. */
class Watcher {
  dlqMax = 0;
  caughtUpAt: number | undefined;
  #pending: Set<string> | undefined;
  #stopped = false;
  readonly #down: DemoEndpoint;
  readonly #done: Promise<void>;

  constructor(stack: LocalStack, down: DemoEndpoint) {
    this.#down = down;
    this.#done = (async () => {
      while (!this.#stopped) {
        const depth = await stack.sqs.depth(stack.sqs.dlq.url);
        this.dlqMax = Math.max(this.dlqMax, depth.visible + depth.inFlight + depth.delayed);
        this.#look();
        await sleep(250);
      }
    })();
  }

  #look(): void {
    if (!this.#pending || this.caughtUpAt !== undefined) return;
    for (const id of this.#pending) if (this.#down.count(id) > 0) this.#pending.delete(id);
    if (this.#pending.size === 0) this.caughtUpAt = Date.now();
  }

  /** From now on, waits for these events at the down endpoint. */
  expect(ids: string[]): void {
    this.#pending = new Set(ids);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
    // The drain may end between two looks: the last events then arrived within the last tick.
    this.#look();
  }
}

function counts(stack: LocalStack): Map<string, number> {
  return new Map((stack.demo?.list ?? []).map((e) => [e.name, e.stats.unique]));
}

async function run(plan: OutagePlan, stack: LocalStack, output: HandlerOutput): Promise<OutageRun> {
  const started = Date.now();
  const down = stack.demo?.list.find((e) => e.name === DOWN_ENDPOINT);
  if (!down) throw new Error(`the local stack runs no demo endpoint '${DOWN_ENDPOINT}'`);
  const sent: SampleMessage[] = [];
  const windowAt = started + plan.warmupS * 1000;
  const recoveryAt = windowAt + plan.windowS * 1000;
  const producing = produce(stack, plan.ratePerS, recoveryAt + plan.afterS * 1000, sent);
  const watcher = new Watcher(stack, down);
  await sleep(windowAt - Date.now());
  const atStart = counts(stack);
  const windowStarted = Date.now();
  if (plan.outage) down.setFaults(DOWN);
  await sleep(recoveryAt - Date.now());
  const atEnd = counts(stack);
  const windowLastedS = (Date.now() - windowStarted) / 1000;
  down.setFaults({ rate: 0 });
  const recoveredAt = Date.now();
  watcher.expect(sent.map((m) => m.demoId));
  await producing;
  const report = await new DrainWatch(stack, sent).waitUntilDrained({ timeoutMs: plan.drainLimitS * 1000 });
  await watcher.stop();
  const lane = stack.lanes.get(DOWN_ENDPOINT);
  const queues = [
    { queue: stack.sqs.queue.name, stats: stack.eventSource.stats },
    ...[...stack.lanes.values()].map((l) => ({ queue: l.queue.name, stats: l.eventSource.stats })),
  ].map(({ queue, stats }) => ({ queue, maxInFlight: stats.maxInFlight, ceilingHits: stats.ceilingHits }));
  return {
    plan,
    sent: sent.length,
    window: [...atStart].map(([name, before]) => {
      const events = (atEnd.get(name) ?? before) - before;
      return { name, events, perSecond: events / windowLastedS };
    }),
    windowLastedS,
    queues,
    dlqMaxMessages: watcher.dlqMax,
    backlogDrainedS: watcher.caughtUpAt === undefined ? null : (watcher.caughtUpAt - recoveredAt) / 1000,
    laneReceives: lane?.eventSource.stats.received ?? 0,
    laneInvocations: lane?.eventSource.stats.invocations ?? 0,
    parked: output.telemetry.byEndpoint[DOWN_ENDPOINT]?.EventsParked ?? 0,
    report,
    elapsedS: (Date.now() - started) / 1000,
  };
}

async function main(): Promise<void> {
  const plan = JSON.parse(process.argv[2] ?? '{}') as OutagePlan;
  const dir = mkdtempSync(join(tmpdir(), 'bench-outage-'));
  const output = new HandlerOutput({ destination: `${OUT_DIR}/outage-${plan.label}.log` });
  output.install();
  const stack = await startLocalStack({
    lanes: plan.lanes,
    inflightCeiling: plan.ceiling,
    concurrency: plan.concurrency,
    maxReceiveCount: plan.maxReceiveCount,
    // As deployed (serverless.yml sets DELIVERY_LEDGER_TABLE): a redelivered record skips the endpoints that have it.
    ledger: true,
    endpointsFile: endpointsFile(dir, plan.retrySchedule),
    faults: { rate: 0 },
    baseEnv: {},
    env: {
      PARK_AFTER_S: String(plan.parkAfterS),
      RETRY_BASE_DELAY_S: String(plan.retryBaseDelayS),
      RETRY_MAX_DELAY_S: String(plan.retryMaxDelayS),
    },
  });
  try {
    const result = await run(plan, stack, output);
    await new Promise<void>((resolve) => process.send?.(result, () => resolve()));
  } finally {
    await stack.stop();
    await output.uninstall();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
