import { intFlag, onInterrupt, parseFlags, pathFlag, rateFlag, runCommand, UsageError } from './cli';
import type { FaultKind } from './demo-endpoints';
import { DrainWatch } from './drain';
import { interleave, malformedMessages, newRunId, sendMessages, validMessages } from './events';
import { HandlerOutput } from './handler-output';
import { OutageWindow, outageLines, parseOutage } from './outage';
import { type LocalStack, startLocalStack } from './stack';
import { progressLine, summaryLines } from './summary';

const USAGE = `Usage: npm run demo -- [--events N] [--invalid K] [--fault-rate P] [--time-limit S]

Starts the local stack on free ports, sends N valid CloudEvents and K malformed messages, and runs until every
valid event has reached every endpoint and every malformed one is in the dead-letter queue. Exit code 0 when
nothing was lost, 1 otherwise (or when it could not drain within the time limit).

  --events N        valid CloudEvents (default 300)
  --invalid K       malformed messages (default 20)
  --fault-rate P    share of endpoint requests that fail: 5xx, connection resets, slow answers (default 0.2)
  --time-limit S    give up after S seconds (default 240)
  --concurrency N   pollers (default 4)
  --endpoints FILE  a stage's endpoints file: its routing and settings, against demo endpoints named after it
  --secrets FILE    values of its secret references (see npm start -- --help)
  --ledger          also run a local DynamoDB with the delivery ledger: redelivered events skip the endpoints
                    that already have them (fewer duplicates)
  --no-lanes        no lane queues: every failing event waits on the source queue (by default each endpoint has
                    its own lane, as on a deployed standard stage: an endpoint failing for PARK_AFTER_S, local
                    default 5 s, has its events parked there)
  --inflight-ceiling N  SQS's in-flight limit per queue (about 120000 on AWS), scaled down: at it a receive
                    answers empty, as SQS does (default: none)
  --log FILE        the handler's JSON logs (default .local/demo-handler.log)
  --outage E:Ss     demo endpoint E answers 5xx to everything for S seconds from the first send (e.g. audit:60s);
                    prints each endpoint's events/s meanwhile and the largest in-flight count per queue

With ENDPOINTS set, the demo delivers there instead of to its own endpoints (and --fault-rate does nothing).`;

/** Where the demo's stack listens and how it is set. */
function printBanner(stack: LocalStack, given: { endpointsFile?: string; faultRate: number; logFile: string }): void {
  const targets = stack.endpointLines
    ? `from ${given.endpointsFile}:\n  ${stack.endpointLines.join('\n  ')}\n`
    : stack.demo
      ? `${stack.demo.list.map((e) => e.name).join(', ')} (demo endpoints, fault rate ${given.faultRate})`
      : `ENDPOINTS=${stack.env.ENDPOINTS}`;
  const ledger = stack.ledger ? ` · delivery ledger ${stack.ledger.table} on ${stack.ledger.endpoint}` : '';
  console.log(`local stack up: SQS ${stack.sqs.endpoint} · endpoints ${targets}${ledger}`);
  console.log(
    `function timeout ${stack.functionTimeoutMs} ms · visibility timeout ${stack.visibilityTimeoutS} s · ` +
      `RETRY_BASE_DELAY_S=${stack.env.RETRY_BASE_DELAY_S} RETRY_MAX_DELAY_S=${stack.env.RETRY_MAX_DELAY_S} · ` +
      `handler logs in ${given.logFile}`,
  );
}

async function demo(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    events: { type: 'string', short: 'n' },
    invalid: { type: 'string' },
    'fault-rate': { type: 'string' },
    'time-limit': { type: 'string' },
    concurrency: { type: 'string' },
    'inflight-ceiling': { type: 'string' },
    lanes: { type: 'boolean' },
    outage: { type: 'string' },
    log: { type: 'string' },
    ledger: { type: 'boolean' },
    endpoints: { type: 'string' },
    secrets: { type: 'string' },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const events = intFlag(flags, 'events', 300, 0, 1_000_000);
  const invalid = intFlag(flags, 'invalid', 20, 0, 1_000_000);
  const faultRate = rateFlag(flags, 'fault-rate', 0.2);
  const timeLimitS = intFlag(flags, 'time-limit', 240, 1, 86_400);
  const inflightCeiling = intFlag(flags, 'inflight-ceiling', 0, 1, 10_000_000) || undefined;
  const concurrency = intFlag(flags, 'concurrency', 4, 1, 1000);
  const logFile = pathFlag(flags, 'log') ?? '.local/demo-handler.log';
  const endpointsFile = pathFlag(flags, 'endpoints');
  const secretsFile = pathFlag(flags, 'secrets');
  if (secretsFile && !endpointsFile) throw new UsageError('--secrets goes with --endpoints FILE');
  const userEndpoints = endpointsFile ? undefined : process.env.ENDPOINTS?.trim() || undefined;

  const output = new HandlerOutput({ destination: logFile });
  output.install();
  const stack = await startLocalStack({
    ...(inflightCeiling ? { inflightCeiling } : {}),
    lanes: flags.lanes !== false,
    concurrency,
    ledger: flags.ledger === true,
    ...(userEndpoints ? { endpoints: userEndpoints } : { faults: { rate: faultRate } }),
    ...(endpointsFile ? { endpointsFile, ...(secretsFile ? { secretsFile } : {}) } : {}),
  });
  const tty = process.stdout.isTTY === true;
  try {
    printBanner(stack, { endpointsFile, faultRate, logFile });
    const outageFlag = typeof flags.outage === 'string' ? flags.outage : undefined;
    const outage = outageFlag
      ? parseOutage(outageFlag, stack.demo?.list.map((endpoint) => endpoint.name) ?? [])
      : undefined;
    const run = newRunId();
    const messages = interleave(validMessages(events, run), malformedMessages(invalid, run));
    const interrupt = new AbortController();
    onInterrupt(() => interrupt.abort());
    let outageWindow: OutageWindow | undefined;
    if (outage) {
      outageWindow = new OutageWindow(stack, outage, () => console.log(`\n${outage.endpoint} is back`));
      console.log(`${outage.endpoint} down (5xx) for ${outage.durationS} s`);
    }
    const sent = await sendMessages(stack.sqs.client, stack.sqs.queue.url, messages, { signal: interrupt.signal });
    if (sent < messages.length) console.log(`sent ${sent} of ${messages.length} messages before Ctrl-C (run ${run})`);
    else console.log(`sent ${events} valid + ${invalid} malformed messages (run ${run}; Ctrl-C stops with a summary)`);

    let lastPrinted = 0;
    const report = await new DrainWatch(stack, messages.slice(0, sent)).waitUntilDrained({
      timeoutMs: timeLimitS * 1000,
      intervalMs: 250,
      signal: interrupt.signal,
      onTick: (progress) => {
        if (tty) output.write(`\r\x1b[2K${progressLine(progress)}`);
        else if (progress.elapsedMs - lastPrinted >= 5000) {
          lastPrinted = progress.elapsedMs;
          console.log(progressLine(progress));
        }
      },
    });
    if (tty) output.write('\n');
    outageWindow?.end();
    await stack.stop();
    const faults: Record<FaultKind, number> = { error: 0, reset: 0, slow: 0, hang: 0 };
    for (const endpoint of stack.demo?.list ?? []) {
      for (const kind of Object.keys(faults) as FaultKind[]) faults[kind] += endpoint.stats.faults[kind];
    }
    console.log(summaryLines(report, { ...(stack.demo ? { faults } : {}), handler: output.telemetry }).join('\n'));
    if (outageWindow) console.log(outageLines(outageWindow.report(), inflightCeiling).join('\n'));
    if (interrupt.signal.aborted) {
      console.log(
        `interrupted (Ctrl-C) after sending ${sent} of ${messages.length} message(s): the summary above is partial`,
      );
      return 130;
    }
    if (!report.drained)
      console.log(`could not drain within ${timeLimitS} s: see ${logFile} for the handler's failures`);
    return report.drained && report.lost === 0 ? 0 : 1;
  } finally {
    await stack.stop();
    await output.uninstall();
  }
}

runCommand(USAGE, () => demo(process.argv.slice(2)));
