// npm run redrive -- --from <dlq-url> [--to <queue-url>] [--max N]: moves quarantined / dead-lettered messages back.
import { parseArgs } from 'node:util';
import { Presets, SingleBar } from 'cli-progress';
import { describePermissions, REDRIVE_PERMISSIONS } from '../../lib/iam-actions';
import { type RedriveMethod, type RedriveSummary, redrive } from '../../lib/redrive';
import { explainUnreachable, localQueueUrl, sqsClientFor } from '../local/queue-address';
import { DEFAULT_DLQ_NAME } from '../local/sqs-server';

const USAGE = `Usage: npm run redrive -- --from <dlq-url> [--to <queue-url>] [--max N] [options]

Moves messages out of a dead-letter / quarantine queue for another attempt.
  --from <url>               the queue to empty (default: the DLQ of a running \`npm start\`,
                             http://127.0.0.1:\${LOCAL_SQS_PORT:-9324}/123456789012/${DEFAULT_DLQ_NAME})
  --to <url>                 send every message here; without it, each message goes back to the queue it came
                             from (SQS's DeadLetterQueueSourceArn, else the quarantine.sourceQueue the
                             function recorded); messages that come back during the run are left, and counted
  --max <N>                  move at most N messages
  --method <m>               auto (default) = loop: marks what it moves (redrive.from) so the function reads the
                             ledger for it; move-task: SQS's StartMessageMoveTask (needs --to, no --max), which
                             cannot mark: messages SQS dead-lettered then reach every endpoint again
  --visibility-timeout <s>   loop only: how long a message in hand stays hidden (default 60; renewed while the
                             run lives); if the run dies, messages in hand and those it held back (came back,
                             arrived later, failed) reappear in the source at most this long after
  --json                     print the summary as JSON
  --help

A loopback URL is the local stack: no AWS variable is needed. Otherwise AWS settings come from the environment as
usual (credentials, AWS_REGION; the region of an sqs.<region>.amazonaws.com URL wins).
The loop moves what --from held when it started (by when SQS stamped each message, not by its approximate count);
messages sent later are left for the next run, and counted.
Ctrl-C stops after the batch in hand; nothing is lost (each message is sent before it is deleted).
If 10 receives in a row find nothing to move (new poison keeps arriving), the loop stops, says older messages
may remain (incomplete), and exits with 3: run it again.
Each SQS call must answer within 30 s: a send that does not is a failure (the message stays in the source; the
destination may have it too, a duplicate at worst).

Exit codes:
  0    done: nothing failed, nothing left behind of what was there at the start (or --max reached)
  1    some messages failed (listed; they stay in the source), the move task failed, or an error stopped the run;
       also when the run was incomplete as well: read the failures first, then run it again
  2    bad arguments
  3    incomplete, nothing failed: new messages kept arriving and older ones may remain; run it again
  130  interrupted (Ctrl-C)

Required permissions (IAM):
${describePermissions(REDRIVE_PERMISSIONS)}`;

function fail(message: string): never {
  console.error(`redrive: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function wholeNumber(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min)
    fail(`--${name} must be a whole number of at least ${min}, not '${value}'`);
  return Number(value);
}

function printSummary(summary: RedriveSummary, from: string) {
  const lines = [
    `redrive ${summary.interrupted ? 'interrupted' : 'finished'} (${summary.method === 'move-task' ? 'SQS message move task' : 'receive-send-delete loop'})`,
    `  moved:          ${summary.moved}`,
    `  failed:         ${summary.failed}`,
    `  left in source: ${Number.isNaN(summary.remaining) ? 'unknown' : summary.remaining} (${from})`,
    `  duration:       ${(summary.durationMs / 1000).toFixed(1)} s`,
  ];
  const destinations = Object.entries(summary.destinations);
  if (destinations.length > 0) {
    lines.push('  moved to:');
    for (const [destination, count] of destinations) lines.push(`    ${count}\t${destination}`);
  }
  if (summary.returned > 0) {
    lines.push(
      `  came back:      ${summary.returned} message(s) moved by this run returned to ${from} (quarantined or ` +
        'dead-lettered again: still poison). They were left there: fix the cause (see their quarantine.reason) ' +
        'before redriving them again.',
    );
  }
  if (summary.arrivedLater > 0) {
    lines.push(
      `  arrived later:  ${summary.arrivedLater} message(s) were sent to ${from} after this run started. They were ` +
        'left there for the next run.',
    );
  }
  if (!summary.complete && !summary.interrupted && summary.method === 'loop') {
    lines.push(
      '  incomplete:     10 receives in a row found only messages this run leaves (new ones keep arriving): ' +
        `messages older than the run may remain in ${from}. Run it again.`,
    );
  }
  if (summary.taskFailureReason) lines.push(`  the move task failed: ${summary.taskFailureReason}`);
  if (summary.failures.length > 0) {
    lines.push('  failures (these messages stay in the source queue):');
    for (const failure of summary.failures.slice(0, 20)) lines.push(`    ${failure.messageId}: ${failure.error}`);
    if (summary.failures.length > 20) lines.push(`    … and ${summary.failures.length - 20} more`);
  }
  console.log(lines.join('\n'));
}

function parse() {
  return parseArgs({
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      max: { type: 'string' },
      method: { type: 'string' },
      'visibility-timeout': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  }).values;
}

async function main() {
  let values: ReturnType<typeof parse>;
  try {
    values = parse();
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const method = values.method ?? 'auto';
  if (!['auto', 'move-task', 'loop'].includes(method))
    fail(`--method must be auto, move-task or loop, not '${method}'`);

  let from: string;
  let sqs: ReturnType<typeof sqsClientFor>;
  try {
    from = values.from ?? localQueueUrl(process.env, DEFAULT_DLQ_NAME);
    sqs = sqsClientFor(from, '--from');
  } catch (error) {
    fail((error as Error).message);
  }
  const controller = new AbortController();
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    console.error('\nredrive: stopping after the batch in hand (Ctrl-C again to quit at once; nothing is lost)');
  });

  const bar = new SingleBar(
    { format: 'redrive [{bar}] {value}/{total} moved | {failed} failed | {duration_formatted}', hideCursor: true },
    Presets.shades_classic,
  );
  let barStarted = false;
  const max = wholeNumber('max', values.max, 1);
  const visibilityTimeoutS = wholeNumber('visibility-timeout', values['visibility-timeout'], 1);
  try {
    const summary = await redrive(sqs, {
      from,
      ...(values.to ? { to: values.to } : {}),
      ...(max !== undefined ? { max } : {}),
      ...(visibilityTimeoutS !== undefined ? { visibilityTimeoutS } : {}),
      method: method as RedriveMethod | 'auto',
      signal: controller.signal,
      onWarning: (warning) => console.error(`redrive: warning: ${warning}`),
      onStart: ({ total }) => {
        if (values.json) return;
        bar.start(total, 0, { failed: 0 });
        barStarted = true;
      },
      onProgress: ({ moved, failed, total }) => {
        if (!barStarted) return;
        bar.setTotal(Math.max(total, moved + failed));
        bar.update(moved, { failed });
      },
    });
    if (barStarted) bar.stop();
    if (values.json) console.log(JSON.stringify(summary));
    else printSummary(summary, from);
    process.exitCode = summary.interrupted
      ? 130
      : summary.failed > 0 || summary.taskFailureReason
        ? 1
        : summary.method === 'loop' && !summary.complete
          ? 3
          : 0;
  } catch (error) {
    if (barStarted) bar.stop();
    console.error(`redrive: ${(explainUnreachable(error, from, '--from') as Error).message}`);
    process.exitCode = 1;
  } finally {
    sqs.destroy();
  }
}

await main();
