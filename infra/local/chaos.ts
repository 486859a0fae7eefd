import { CHAOS_FUNCTION_TIMEOUT_MS, type ChaosReport, runChaos } from './chaos-scenario';
import { intFlag, parseFlags, pathFlag, rateFlag, runCommand } from './cli';
import { progressLine, summaryLines } from './summary';

const USAGE = `Usage: npm run chaos -- [--events N] [--invalid K] [--fault-rate P] [--time-limit S] [--markdown]

Sends N valid CloudEvents and K malformed messages through the local pipeline (real handler, local SQS, three demo
endpoints) while endpoints answer 5xx, reset connections, answer slowly or hang, one endpoint is slow throughout,
the quarantine queue is down for a while and one endpoint stalls until invocations hit their deadline. Exit code
0 when every valid event reached every endpoint and every malformed one the dead-letter queue; 1 otherwise.

  --events N        valid CloudEvents (default 10000)
  --invalid K       malformed messages (default N / 20)
  --fault-rate P    share of endpoint requests that fail (default 0.1)
  --time-limit S    give up after S seconds (default 600)
  --concurrency N   pollers (default 8)
  --no-lanes        no lane queues: every failing event waits on the source queue (by default each endpoint has
                    its own lane, as on a deployed standard stage: an endpoint failing for PARK_AFTER_S, local
                    default 5 s, has its events parked there)
  --inflight-ceiling N  SQS's in-flight limit per queue, scaled down: at it a receive answers empty (default: none)
  --log FILE        the handler's JSON logs (default .local/chaos-handler.log)
  --markdown        also print the figures as a Markdown table`;

function markdown(report: ChaosReport, command: string): string {
  const { drain } = report;
  const endpoints = drain.endpoints ?? [];
  const rows: [string, string][] = [
    ['Command', `\`${command}\``],
    ['Events', `${report.events} valid + ${report.malformed} malformed`],
    ['Time to drain', `${(drain.elapsedMs / 1000).toFixed(1)} s (whole run ${(report.elapsedMs / 1000).toFixed(1)} s)`],
    ['Endpoint requests', String(report.requests)],
    [
      'Faults injected',
      `5xx ${report.faults.error} · resets ${report.faults.reset} · slow ${report.faults.slow} · hangs ${report.faults.hang} · quarantine calls refused ${report.quarantineRefused}`,
    ],
    ['Delivered', endpoints.map((e) => `${e.name} ${e.delivered}/${report.events}`).join(' · ')],
    ['Duplicates seen by endpoints', endpoints.map((e) => `${e.name} ${e.duplicates}`).join(' · ')],
    ['Redeliveries', String(drain.redeliveries)],
    [
      'Dead-letter queue',
      `${drain.dlq.malformed}/${report.malformed} malformed (${drain.dlq.quarantined} quarantined, ${drain.dlq.redriven} redriven) · ${drain.dlq.valid} valid`,
    ],
    [
      'Handler',
      `deadline aborts ${report.handler.metrics.DeadlineAborts ?? 0} · quarantine errors ${report.handler.metrics.QuarantineErrors ?? 0} · function timeouts ${report.mapping.timeouts}`,
    ],
    ['Lost', String(drain.lost)],
  ];
  return ['| | |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}

async function chaos(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    events: { type: 'string', short: 'n' },
    invalid: { type: 'string' },
    'fault-rate': { type: 'string' },
    'time-limit': { type: 'string' },
    concurrency: { type: 'string' },
    'inflight-ceiling': { type: 'string' },
    lanes: { type: 'boolean' },
    log: { type: 'string' },
    markdown: { type: 'boolean' },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const events = intFlag(flags, 'events', 10_000, 1, 1_000_000);
  const malformed = intFlag(flags, 'invalid', Math.max(10, Math.floor(events / 20)), 0, 1_000_000);
  const faultRate = rateFlag(flags, 'fault-rate', 0.1);
  const timeLimitS = intFlag(flags, 'time-limit', 600, 1, 86_400);
  const concurrency = intFlag(flags, 'concurrency', 8, 1, 1000);
  const inflightCeiling = intFlag(flags, 'inflight-ceiling', 0, 1, 10_000_000) || undefined;
  const log = pathFlag(flags, 'log') ?? '.local/chaos-handler.log';
  const tty = process.stdout.isTTY === true;

  console.log(
    `chaos: ${events} valid + ${malformed} malformed messages · fault rate ${faultRate} · ${concurrency} pollers · ` +
      `function timeout ${CHAOS_FUNCTION_TIMEOUT_MS} ms · handler logs in ${log}`,
  );
  let lastPrinted = 0;
  const report = await runChaos({
    events,
    malformed,
    faultRate,
    concurrency,
    ...(inflightCeiling ? { inflightCeiling } : {}),
    lanes: flags.lanes !== false,
    timeoutMs: timeLimitS * 1000,
    handlerLog: log,
    onPhase: (atMs, what) =>
      console.log(`${tty ? '\r\x1b[2K' : ''}[${(atMs / 1000).toFixed(1).padStart(5)} s] ${what}`),
    onProgress: (progress) => {
      if (tty) process.stdout.write(`\r\x1b[2K${progressLine(progress)}`);
      else if (progress.elapsedMs - lastPrinted >= 10_000) {
        lastPrinted = progress.elapsedMs;
        console.log(progressLine(progress));
      }
    },
  });
  if (tty) process.stdout.write('\n');
  console.log(summaryLines(report.drain, { faults: report.faults, handler: report.handler }).join('\n'));
  console.log(
    `  endpoint requests ${report.requests} · quarantine calls refused ${report.quarantineRefused} · function timeouts ${report.mapping.timeouts}`,
  );
  console.log(
    `  largest in flight on the source queue ${report.mapping.maxInFlight}${inflightCeiling ? ` (ceiling ${inflightCeiling}, ${report.mapping.ceilingHits} receive(s) empty at it)` : ''}`,
  );
  if (flags.markdown) console.log(`\n${markdown(report, `npm run chaos -- ${argv.join(' ')}`.trim())}`);
  return report.drain.drained && report.drain.lost === 0 ? 0 : 1;
}

runCommand(USAGE, () => chaos(process.argv.slice(2)));
