import { relative } from 'node:path';
import { intFlag, localSqsPort, onInterrupt, parseFlags, pathFlag, rateFlag, runCommand, UsageError } from './cli';
import { HandlerOutput } from './handler-output';
import { DEFAULT_SQS_PORT } from './sqs-server';
import { LOCAL_FUNCTION_TIMEOUT_MS, LOCAL_HANDLER_DEFAULTS, type LocalStack, startLocalStack } from './stack';
import { formatLine, StatusDisplay, type StatusSnapshot } from './status';

const USAGE = `Usage: npm start [-- options]

Runs the whole pipeline on 127.0.0.1: an SQS server with the source queue and its dead-letter queue,
three demo endpoints (or the ENDPOINTS you set), and the real handler behind an emulated SQS event source mapping.

  --port P          SQS server port (default \${LOCAL_SQS_PORT:-${DEFAULT_SQS_PORT}}; 0 picks a free one)
  --concurrency N   pollers, i.e. concurrent invocations (default 2)
  --batch-size N    records per invocation, 1-10000 (default 10; over 10 needs --window)
  --window S        batching window in seconds, 0-300 (default 0)
  --timeout MS      function timeout in ms (default ${LOCAL_FUNCTION_TIMEOUT_MS})
  --fault-rate P    share of demo endpoint requests that fail (5xx, resets, slow answers), 0-1 (default 0)
  --ledger          also run a local DynamoDB (dynalite) with the delivery ledger table
  --no-lanes        no lane queues: every failing event waits on the source queue (by default each endpoint has
                    its own lane, as on a deployed standard stage: an endpoint failing for PARK_AFTER_S, local
                    default 5 s, has its events parked there;
                    \`npm run endpoint -- pause <name> --local\` pauses one)
  --inflight-ceiling N  SQS's in-flight limit per queue (about 120000 on AWS), scaled down: at it a receive
                    answers empty, as SQS does (default: none)
  --endpoints FILE  a stage's endpoints file (e.g. endpoints/prod.yml): its filters, content modes, auth, signing
                    and limits, delivered to demo endpoints standing in for its non-loopback URLs
  --secrets FILE    values of the file's secret references (YAML: ssm: {name: value}, secretsmanager: {...});
                    served by local SSM/Secrets Manager stand-ins; missing ones are generated
  --log FILE        where the handler's JSON logs and metrics go (default .local/handler.log on a terminal,
                    stdout otherwise)

Then, in a second terminal: npm run send -- --count 100`;

/** Where everything listens, as the banner shows it. */
function bannerLines(stack: LocalStack, handler: string, logFile: string | undefined): string[] {
  const { sqs, env } = stack;
  const settings = Object.keys(LOCAL_HANDLER_DEFAULTS)
    .filter((key) => !key.startsWith('POWERTOOLS_'))
    .map((key) => `${key}=${env[key]}`)
    .join(' ');
  return [
    'ingest-fanout local stack (Ctrl-C stops it)',
    `  SQS        ${sqs.endpoint}   (AWS_ENDPOINT_URL_SQS for your own tools)`,
    `  queue      ${sqs.queue.url}   visibility timeout ${stack.visibilityTimeoutS} s`,
    `  DLQ        ${sqs.dlq.url}   quarantine queue; SQS redrives after ${sqs.maxReceiveCount} receives`,
    ...(stack.endpointLines
      ? stack.endpointLines.map((line, i) => `  ${i === 0 ? 'endpoints ' : '          '} ${line}`)
      : stack.demo
        ? stack.demo.list.map(
            (endpoint, i) => `  ${i === 0 ? 'endpoints ' : '          '} ${endpoint.name.padEnd(10)} ${endpoint.url}`,
          )
        : [`  endpoints  ${env.ENDPOINTS} (from ENDPOINTS)`]),
    ...(stack.ledger
      ? [`  ledger     ${stack.ledger.endpoint}   table ${stack.ledger.table} (DELIVERY_LEDGER_TABLE)`]
      : []),
    `  handler    functions/ingest/handler.ts · ${handler}`,
    `  settings   ${settings}`,
    `  logs       ${logFile ? relative(process.cwd(), logFile) || logFile : 'below (JSON lines)'}`,
    '',
    'Send events from another terminal: npm run send -- --count 100',
    '',
  ];
}

/** What the run did, and what the in-memory queues drop as it ends. */
function stoppedLine(s: StatusSnapshot): string {
  const q = s.queue.depth;
  const d = s.dlq.depth;
  const queued = q.visible + q.inFlight + q.delayed;
  const dlq = d.visible + d.inFlight + d.delayed;
  const dropped = queued + dlq > 0 ? ' (the queues were in memory: those messages are gone)' : '';
  return (
    `stopped after ${Math.round(s.uptimeMs / 1000)} s: ${s.mapping.received} received · ${s.mapping.acknowledged} acknowledged · ` +
    `${dlq} in the DLQ · ${queued} still queued (${q.visible} visible, ${q.inFlight} in flight, ${q.delayed} delayed)${dropped}`
  );
}

async function start(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    port: { type: 'string' },
    concurrency: { type: 'string' },
    'inflight-ceiling': { type: 'string' },
    lanes: { type: 'boolean' },
    'batch-size': { type: 'string' },
    window: { type: 'string' },
    timeout: { type: 'string' },
    'fault-rate': { type: 'string' },
    log: { type: 'string' },
    ledger: { type: 'boolean' },
    endpoints: { type: 'string' },
    secrets: { type: 'string' },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const port = intFlag(flags, 'port', localSqsPort(process.env, DEFAULT_SQS_PORT), 0, 65_535);
  const inflightCeiling = intFlag(flags, 'inflight-ceiling', 0, 1, 10_000_000) || undefined;
  const concurrency = intFlag(flags, 'concurrency', 2, 1, 1000);
  const batchSize = intFlag(flags, 'batch-size', 10, 1, 10_000);
  const windowS = intFlag(flags, 'window', 0, 0, 300);
  const functionTimeoutMs = intFlag(flags, 'timeout', LOCAL_FUNCTION_TIMEOUT_MS, 100, 900_000);
  const faultRate = rateFlag(flags, 'fault-rate', 0);
  const tty = process.stdout.isTTY === true;
  const logFile = pathFlag(flags, 'log') ?? (tty ? '.local/handler.log' : undefined);

  const output = new HandlerOutput({ destination: logFile ?? 'terminal' });
  output.install();
  const endpointsFile = pathFlag(flags, 'endpoints');
  const secretsFile = pathFlag(flags, 'secrets');
  if (secretsFile && !endpointsFile) throw new UsageError('--secrets goes with --endpoints FILE');
  const userEndpoints = endpointsFile ? undefined : process.env.ENDPOINTS?.trim() || undefined;
  const stack = await startLocalStack({
    ...(inflightCeiling ? { inflightCeiling } : {}),
    lanes: flags.lanes !== false,
    sqsPort: port,
    ledger: flags.ledger === true,
    concurrency,
    batchSize,
    maximumBatchingWindowS: windowS,
    functionTimeoutMs,
    ...(userEndpoints ? { endpoints: userEndpoints } : { faults: { rate: faultRate } }),
    ...(endpointsFile ? { endpointsFile, ...(secretsFile ? { secretsFile } : {}) } : {}),
    onPollError: (error) => console.error(`poller: ${error instanceof Error ? error.message : String(error)}`),
  });

  const handler = `timeout ${functionTimeoutMs} ms · ${concurrency} poller(s) · batch ${batchSize}${windowS ? ` within ${windowS} s` : ''}`;
  const banner = bannerLines(stack, handler, logFile);
  output.write(`${banner.join('\n')}\n`);

  const display = new StatusDisplay({ write: (text) => output.write(text), tty });
  display.start(() => stack.snapshot(output.telemetry));

  const stopped = new Promise<void>((resolve) =>
    onInterrupt(() => {
      display.stop();
      output.write(
        `\nstopping: waiting for running invocations (up to ${functionTimeoutMs} ms); Ctrl-C again to force\n`,
      );
      resolve();
    }, output.write.bind(output)),
  );
  await stopped;
  // The running invocations first: what they acknowledge belongs in the summary, not under "still queued".
  await stack.stopPolling();
  const last = await stack.snapshot(output.telemetry);
  await stack.stop();
  await output.uninstall();
  console.log(formatLine(last));
  console.log(stoppedLine(last));
  return 0;
}

runCommand(USAGE, () => start(process.argv.slice(2)));
