// The values serverless.yml and infra/*.yml read as ${file(./infra/stage.js):<export>}.

import { StageConfigError, stop } from './errors';
import { type FrameworkContext, load, type Stage } from './load';
import { integer, LIMITS } from './params';

let pending: Promise<Stage> | undefined;

/** The stage, loaded once for every variable that reads it. */
export function stageOf(context: FrameworkContext): Promise<Stage> {
  // The framework resolves in passes and rejects lookups of not-yet-available sources (stage params) in the
  // first: remember only a successful load.
  pending ??= load(context).catch((error: unknown) => {
    if (error instanceof StageConfigError) stop(error);
    pending = undefined;
    throw error;
  });
  return pending;
}

/** AWS: at least 6 × the function timeout plus the batching window, so no batch is seen twice while in flight. */
export async function queueVisibilityTimeoutS(context: FrameworkContext) {
  const stage = await stageOf(context);
  return 6 * stage.timeoutS + stage.windowS;
}

/** A day beyond the longest a record can wait before a redrive: in the source queue, then in the DLQ. */
export const LEDGER_TTL_MARGIN_S = 86_400;

/** DELIVERY_LEDGER_TTL_S: a late redrive must still find what each endpoint already accepted. */
export async function ledgerTtlS(context: FrameworkContext) {
  // Part of the environment that load() reads: computed from the params alone (checked there), not from load().
  const param = (name: string) => context.resolveVariable(`param:${name}`);
  const [stage, queue, dlq] = await Promise.all([
    context.resolveVariable('sls:stage'),
    param('queueRetentionS'),
    param('dlqRetentionS'),
  ]);
  return (
    integer(String(stage), 'queueRetentionS', queue, LIMITS.retentionS) +
    integer(String(stage), 'dlqRetentionS', dlq, LIMITS.retentionS) +
    LEDGER_TTL_MARGIN_S
  );
}

/**
 * Error alarms look back over more than one visibility timeout (in 60 s periods, firing on one data point): a batch
 * that fails whole comes back only that often, so one failing batch must be enough to alarm.
 */
export async function errorAlarmPeriods(context: FrameworkContext) {
  return Math.ceil((await queueVisibilityTimeoutS(context)) / 60) + 1;
}

/** The queue-age alarm's threshold (s), checked by load(). */
export async function queueAgeAlarmS(context: FrameworkContext) {
  return (await stageOf(context)).queueAgeAlarmS;
}

/** esbuild `define` value: the endpoints file as a JavaScript string literal ('""' when the stage has none). */
export async function endpointsBundle(context: FrameworkContext) {
  return JSON.stringify((await stageOf(context)).endpointsBundle);
}

/** The validated batch size (at most 10 for FIFO queues). */
export async function batchSize(context: FrameworkContext) {
  return (await stageOf(context)).batchSize;
}
