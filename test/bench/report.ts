/** Turns the bench results into the Markdown printed at the end of `npm run bench` (and pasted into BENCHMARKS.md). */
import type { Machine } from './machine';
import type { BenchOptions } from './measure';
import type { OutageRun } from './outagePlan';
import { outageSection } from './outageReport';
import { parkingSection } from './parkingReport';
import { PLATFORM_LOG_BYTES, PRICE_SOURCES, PRICES, SQS_REQUESTS_PER_EVENT } from './prices';
import { ARTIFACT_LIMIT_BYTES, COLD_EVENTS, COLD_TARGET_RATIO, type ColdStart } from './scenarios/coldStart';
import { type CpuResult, OWN } from './scenarios/cpu';
import { DEADLINE_MS, DEADLINE_SPARE_TARGET_MS, type DeadlineRow } from './scenarios/deadline';
import { FD_DELAY_MS, type FdLimitRow, LAMBDA_MAX_FILES } from './scenarios/fdLimit';
import { type Instance, type InstanceRow, TARGET_RATES, VCPU_MB } from './scenarios/instance';
import { MEMORY_DELAY_MS, MEMORY_EVENTS, MEMORY_TARGET_MIB, type MemoryRow } from './scenarios/memory';
import { SHAPING_EVENTS, type ShapingRow } from './scenarios/shaping';
import { SLOW_DELAY_MS, SLOW_EVENTS, SLOW_TARGET_MS, type SlowRow } from './scenarios/slow';
import type { ThroughputCell } from './scenarios/throughput';
import { formatMs, formatRatio, markdownTable, type Summary } from './stats';
import { DEFAULT_CONNECTIONS } from './subject';

export interface Results {
  command: string;
  date: string;
  machine: Machine;
  options: BenchOptions & { sizes: number[] };
  throughput?: ThroughputCell[];
  fdLimit?: FdLimitRow[];
  slow?: SlowRow[];
  deadline?: DeadlineRow[];
  coldStart?: ColdStart;
  memory?: MemoryRow[];
  cpu?: CpuResult;
  shaping?: ShapingRow[];
  instance?: Instance;
  outage?: OutageRun[];
  elapsedS?: number;
}

const FLOOR_TARGET = 1.15;

const mark = (ok: boolean) => (ok ? 'met' : '**missed**');
const n = (v: number) => v.toLocaleString('en-US');
const kB = (bytes: number) => `${(bytes / 1000).toFixed(1)} kB`;
const mib = (s: Summary) =>
  s.n > 1 ? `${s.median.toFixed(0)} MiB [${s.min.toFixed(0)}–${s.max.toFixed(0)}]` : `${s.median.toFixed(0)} MiB`;

/** The faster floor's median batch time in this cell. */
function fastestFloor(cell: ThroughputCell): number {
  return Math.min(...cell.runners.filter((r) => r.id.startsWith('floor') && r.ms.n > 0).map((r) => r.ms.median));
}

function throughputSection(cells: ThroughputCell[]): string[] {
  const ids = cells[0]?.runners.map((r) => r.id) ?? [];
  const labels = cells[0]?.runners.map((r) => r.label) ?? [];
  const rows = cells.map((cell) => {
    const get = (id: string) => cell.runners.find((r) => r.id === id);
    const handler = get('handler')?.ms.median;
    return [
      n(cell.events),
      `${cell.protocol}, ${cell.delayMs} ms`,
      String(cell.runners[0]?.ms.n ?? 0),
      ...ids.map((id) => {
        const ms = get(id)?.ms;
        return ms && ms.n !== cell.runners[0]?.ms.n
          ? `${formatMs(ms)} (${ms.n} run${ms.n === 1 ? '' : 's'})`
          : formatMs(ms);
      }),
      formatRatio(get('handler-logs')?.ms.median, fastestFloor(cell)),
      formatRatio(handler, fastestFloor(cell)),
      formatRatio(handler, get('floor-http')?.ms.median),
      formatRatio(handler, get('naive')?.ms.median),
      formatRatio(handler, get('powertools')?.ms.median),
    ];
  });
  const lines = [
    '### 1. Batch time: N events × 3 endpoints (median [min–max] over the runs, warm instance)',
    '',
    markdownTable(
      [
        'events',
        'endpoints answer in',
        'runs',
        ...labels,
        'as deployed ÷ fastest floor',
        'logs off ÷ fastest floor',
        'logs off ÷ floor (node:http)',
        'handler ÷ naive',
        'handler ÷ Powertools',
      ],
      rows,
    ),
    '',
    'The floors send the same POSTs from a bare keep-alive pool of the same size; the faster one is the target floor.',
  ];
  const problems = cells.flatMap((cell) =>
    cell.runners
      .filter((r) => r.maxFailed > 0 || r.lostRuns > 0)
      .map(
        (r) =>
          `- ${r.label}, ${n(cell.events)} events, ${cell.protocol} @ ${cell.delayMs} ms: ${r.maxFailed > 0 ? `up to ${n(r.maxFailed)} records reported failed in a run` : ''}${r.lostRuns > 0 ? `${r.lostRuns} run(s) reported success without every POST arriving` : ''}`,
      ),
  );
  lines.push(
    '',
    problems.length > 0
      ? `Failures:\n${problems.join('\n')}`
      : 'Every runner delivered every event to every endpoint in every run.',
  );
  lines.push(
    '',
    'Most connections a runner had open to one endpoint at once (its warm-up run from cold pools, at most 2,000 events):',
    '',
    markdownTable(
      ['events', 'endpoints answer in', ...labels],
      cells.map((cell) => [
        n(cell.events),
        `${cell.protocol}, ${cell.delayMs} ms`,
        ...ids.map((id) => {
          const runner = cell.runners.find((r) => r.id === id);
          return runner ? n(runner.peakConnections) : '—';
        }),
      ]),
    ),
  );
  const ratios = cells
    .map((cell) => ({
      cell,
      ratio: (cell.runners.find((r) => r.id === 'handler-logs')?.ms.median ?? Number.NaN) / fastestFloor(cell),
    }))
    .filter((r) => Number.isFinite(r.ratio));
  if (ratios.length > 0) {
    const worst = ratios.reduce((a, b) => (b.ratio > a.ratio ? b : a));
    const met = ratios.filter((r) => r.ratio <= FLOOR_TARGET).length;
    lines.push(
      '',
      `Target: as deployed ≤ ${FLOOR_TARGET}× the fastest floor in every cell: met in ${met} of ${ratios.length}; worst ${worst.ratio.toFixed(2)}× (${n(worst.cell.events)} events, ${worst.cell.protocol} @ ${worst.cell.delayMs} ms): ${mark(met === ratios.length)}.`,
    );
  }
  return lines;
}

function fdLimitSection(rows: FdLimitRow[]): string[] {
  return [
    `### 1b. Under Lambda's limit of ${n(LAMBDA_MAX_FILES)} open files (one run each, http, endpoints answer in ${FD_DELAY_MS} ms)`,
    '',
    markdownTable(
      ['runner', 'events', 'batch time', 'records failed'],
      rows.map((r) => [r.label, n(r.events), `${r.ms.toFixed(0)} ms`, n(r.failed)]),
    ),
    '',
    'Each runner process gets `prlimit --nofile=1024`, as in a Lambda execution environment; records fail when the runner cannot open a socket (EMFILE).',
  ];
}

function slowSection(rows: SlowRow[]): string[] {
  return [
    `### 2. Slow endpoint: ${SLOW_EVENTS} events, one endpoint answers in ${SLOW_DELAY_MS / 1000} s, two at once`,
    '',
    markdownTable(
      ['runner', 'batch time', `within ${SLOW_TARGET_MS / 1000} s`, 'records failed'],
      rows.map((r) => [r.label, formatMs(r.ms), r.ms.median <= SLOW_TARGET_MS ? 'yes' : 'no', n(r.maxFailed)]),
    ),
    '',
    `Target for the handler with its defaults (first row, ENDPOINT_MAX_CONNECTIONS=${DEFAULT_CONNECTIONS}): ≤ ${SLOW_TARGET_MS} ms: ${mark((rows[0]?.ms.median ?? Infinity) <= SLOW_TARGET_MS)}.`,
  ];
}

function deadlineSection(rows: DeadlineRow[]): string[] {
  const handlerRows = rows.filter((r) => r.spareMs && r.label.startsWith('ingest-fanout'));
  // A run that threw (middy's early timeout) has no answer at all: it counts as missing the target.
  const threw = handlerRows.some((r) => r.errors);
  const worst = threw ? Number.NEGATIVE_INFINITY : Math.min(...handlerRows.map((r) => r.spareMs!.min));
  return [
    `### 3. Deadline: ${DEADLINE_MS / 1000} s left, one endpoint never answers`,
    '',
    markdownTable(
      [
        'runner',
        'events',
        'answer after',
        'to spare (min over runs)',
        'records failed',
        'threw',
        'log output',
        'next batch on the same instance',
      ],
      rows.map((r) => [
        r.label,
        n(r.events),
        r.ms ? formatMs(r.ms) : (r.note ?? '—'),
        r.spareMs ? `${r.spareMs.min.toFixed(0)} ms` : '—',
        r.failed !== undefined ? n(r.failed) : '—',
        r.errors ? `${r.errors.count}× ${r.errors.first}` : r.ms ? '0' : '—',
        r.logBytes !== undefined ? kB(r.logBytes) : '—',
        r.next
          ? r.next.answered === r.next.runs
            ? `answered, ${formatMs(r.next.ms)}`
            : `**${r.next.runs - r.next.answered} of ${r.next.runs} runs: no answer** (${r.next.firstError ?? 'records failed'})`
          : '—',
      ]),
    ),
    '',
    `Target: the answer before the deadline with ≥ ${DEADLINE_SPARE_TARGET_MS} ms to spare, every run: ${threw ? 'some runs threw instead of answering' : `smallest spare ${worst.toFixed(0)} ms`}: ${mark(worst >= DEADLINE_SPARE_TARGET_MS)}.`,
    '',
    `"next batch": right after the deadline run, the same instance gets 100 events with every endpoint answering at once and 5 s left.`,
    ...(handlerRows.some((r) => r.othersServed === false)
      ? ['', '**The endpoints that answer did not receive every event in some run.**']
      : []),
  ];
}

function coldStartSection(c: ColdStart): string[] {
  const deployed = c.rows.find((r) => r.id === 'deployed');
  const minimal = c.rows.find((r) => r.id === 'minimal');
  const ratio = deployed && minimal ? deployed.totalMs.median / minimal.totalMs.median : Number.NaN;
  return [
    `### 4. Cold start: process start → answer of a first ${COLD_EVENTS}-event batch (fresh process each, median [min–max] of ${c.processes})`,
    '',
    markdownTable(
      ['handler', 'bundle', 'module loaded', 'first batch', 'process start → answer', '÷ minimal'],
      c.rows.map((r) => [
        r.label,
        r.bytes !== undefined ? kB(r.bytes) : r.id === 'deployed' ? `zip ${kB(c.artifactBytes)}` : '—',
        formatMs(r.loadMs, 1),
        formatMs(r.firstBatchMs, 1),
        formatMs(r.totalMs, 1),
        minimal ? `${(r.totalMs.median / minimal.totalMs.median).toFixed(2)}×` : '—',
      ]),
    ),
    '',
    `Each row: a fresh \`${c.node.includes('node24') ? 'Node 24' : 'node'}\` process imports the handler and calls it once with ${COLD_EVENTS} records for 3 loopback endpoints (answering at once), with the deployed environment: INFO logs, EMF metrics, \`--enable-source-maps\`; tracing off (no X-Ray daemon). "module loaded" counts from the process's start (Node's own boot included). @aws-sdk/* left external resolves from node_modules, as the runtime provides it.`,
    `Artifact: ${c.artifactFiles.join(', ')}; zip ${kB(c.artifactBytes)} (limit ${ARTIFACT_LIMIT_BYTES / 1e6} MB): ${mark(c.artifactBytes < ARTIFACT_LIMIT_BYTES)}.`,
    `Target: as deployed ≤ ${COLD_TARGET_RATIO}× the minimal handler: ${ratio.toFixed(2)}×: ${mark(ratio <= COLD_TARGET_RATIO)}.`,
    '',
    `What the handler bundle holds: ${c.byPackage
      .slice(0, 10)
      .map((p) => `${p.name} ${kB(p.bytes)}`)
      .join(', ')}.`,
  ];
}

function memorySection(rows: MemoryRow[]): string[] {
  const handler = rows.find((r) => r.kind === 'handler' && r.heap.includes(`${MEMORY_TARGET_MIB} MB`));
  return [
    `### 5. Memory: peak RSS, ${n(MEMORY_EVENTS)} events × 3 endpoints at ${MEMORY_DELAY_MS} ms, fresh process, two invocations`,
    '',
    markdownTable(
      ['runner', 'heap limits', 'peak RSS (VmHWM)', 'RSS after load', 'batch time', 'records failed'],
      rows.map((r) => [
        r.label,
        r.heap,
        r.peakMiB.n > 0 ? mib(r.peakMiB) : `**died**: ${r.error?.split('\n')[0] ?? ''}`,
        r.baselineMiB.n > 0 ? mib(r.baselineMiB) : '—',
        formatMs(r.ms),
        r.peakMiB.n > 0 ? n(r.maxFailed) : '—',
      ]),
    ),
    '',
    `Invocation payload: ${(rows[0]?.payloadBytes ?? 0) / 1e6 > 0 ? `${((rows[0]?.payloadBytes ?? 0) / 1e6).toFixed(1)} MB` : '—'} of JSON for ${n(MEMORY_EVENTS)} records.`,
    `Heap limits: "Lambda N MB flags" = the \`--max-semi-space-size\` and \`--max-old-space-size\` Lambda's Node.js bootstrap derives from the function's memory size (N/20 and 0.9 N MB), so V8 collects as it would there.`,
    handler
      ? `Target: ≤ ${MEMORY_TARGET_MIB} MiB (handler, Lambda ${MEMORY_TARGET_MIB} MB flags, largest over the processes): ${handler.peakMiB.n > 0 ? `${handler.peakMiB.max.toFixed(0)} MiB` : 'the process died'}: ${mark(handler.peakMiB.n > 0 && handler.peakMiB.max <= MEMORY_TARGET_MIB && !handler.error)}.`
      : '',
  ];
}

function cpuSection(c: CpuResult): string[] {
  const ownRows = c.profile.filter((p) => OWN.includes(p.category) && p.usPerEvent > 0);
  const own = ownRows.reduce((s, p) => s + p.usPerEvent, 0);
  const total = c.profile.reduce((s, p) => s + p.usPerEvent, 0);
  return [
    `### 6. CPU per event (${n(c.events)} events × 3 endpoints answering at once)`,
    '',
    markdownTable(
      ['runner', 'process CPU per event (user + system)'],
      c.perEventUs.map((p) => [
        p.label,
        p.us.n > 1
          ? `${p.us.median.toFixed(1)} µs [${p.us.min.toFixed(1)}–${p.us.max.toFixed(1)}]`
          : `${p.us.median.toFixed(1)} µs`,
      ]),
    ),
    '',
    `Where the main thread spends it (sampling profile every ${c.sampleIntervalUs} µs over ${c.runs} batches each; self time, built-ins counted for their caller; idle excluded):`,
    '',
    markdownTable(
      ['what', 'handler µs per event', 'share', `${c.floorLabel} µs per event`],
      [
        ...c.profile.map((p) => [
          p.label,
          p.usPerEvent.toFixed(1),
          `${((p.usPerEvent / total) * 100).toFixed(0)} %`,
          p.floorUsPerEvent.toFixed(1),
        ]),
        ['total', total.toFixed(1), '100 %', c.profile.reduce((s, p) => s + p.floorUsPerEvent, 0).toFixed(1)],
      ],
    ),
    '',
    `The handler itself (validation, bookkeeping, response: ${ownRows.map((p) => p.category).join(' + ')}): **${own.toFixed(1)} µs per event**.`,
    '',
    'Heaviest lib/ functions (µs per event):',
    '',
    markdownTable(
      ['function', 'µs per event'],
      c.topLib.map((f) => [`\`${f.fn}\``, f.usPerEvent.toFixed(2)]),
    ),
  ];
}

function instanceSection(c: Instance): string[] {
  return [
    `### 7. Throughput per instance: batches of ${c.rows[0]?.batch ?? '—'} events (serverless.yml's batchSize) back to back, as deployed, at ${c.memoryMb} MB`,
    '',
    markdownTable(
      [
        'endpoints answer in',
        'runs',
        'batch time here',
        'CPU per batch',
        `batch time at ${c.memoryMb} MB (emulated)`,
        'events/s per instance',
        ...TARGET_RATES.map((rate) => `maximumConcurrency for ${n(rate)} events/s`),
        'records failed',
      ],
      c.rows.map((r) => [
        `${r.delayMs} ms`,
        String(r.runs),
        formatMs(r.wallMs, 1),
        formatMs(r.cpuMs, 1),
        `${r.emulatedMs.toFixed(0)} ms`,
        n(Math.floor(r.eventsPerS)),
        ...r.concurrency.map((x) => n(x.instances)),
        n(r.failed),
      ]),
    ),
    '',
    `CPU share emulated from the measurement: a ${c.memoryMb} MB function gets ${c.memoryMb} / ${VCPU_MB} = ${c.cpuShare.toFixed(2)} of a vCPU, so the batch's CPU time is stretched by 1 / ${c.cpuShare.toFixed(2)} and its waiting on the endpoints is not (batch time here + CPU × (1/share − 1)). x86 cores here, Graviton there; the time between invocations (the poller's receive, about tens of ms) is not counted, so read the rates as upper bounds. maximumConcurrency is at least 2.`,
  ];
}

function costSection(c: Instance): string[] {
  const perMillion = (r: InstanceRow) => {
    const batches = 1e6 / r.batch;
    const lambda =
      batches * (r.emulatedMs / 1000) * (c.memoryMb / 1024) * PRICES.lambdaArmGbSecond + batches * PRICES.lambdaRequest;
    const sqs = 1e6 * SQS_REQUESTS_PER_EVENT * PRICES.sqsRequest;
    const logs = ((batches * (r.logBytesPerBatch + PLATFORM_LOG_BYTES)) / 1e9) * PRICES.logsIngestedGb;
    return { lambda, sqs, logs };
  };
  const endpoints = 3;
  const strongLedger = 1e6 * endpoints * (0.5 * PRICES.dynamoReadUnit + PRICES.dynamoWriteUnit);
  const failureRate = 0.01;
  // Redelivered events: one lookup of each (event, endpoint) pair; failed events: one write per endpoint done (2 of 3).
  const cheapLedger = 1e6 * failureRate * (endpoints * 0.5 * PRICES.dynamoReadUnit + 2 * PRICES.dynamoWriteUnit);
  const usd = (v: number) => (v >= 0.1 ? `$${v.toFixed(2)}` : `$${v.toFixed(4)}`);
  const rows = c.rows.map((r) => ({ r, ...perMillion(r) }));
  const alternatives: [string, number][] = [
    [
      'EventBridge: PutEvents to a bus, 3 rules → 3 API destinations',
      PRICES.eventBridgeCustomEvent + endpoints * PRICES.eventBridgeApiDestination,
    ],
    [
      'EventBridge Pipes: SQS → pipe → bus → 3 API destinations (+ the SQS requests)',
      PRICES.pipesRequest + PRICES.eventBridgeCustomEvent + endpoints * PRICES.eventBridgeApiDestination,
    ],
    ['SNS: one publish, 3 HTTP/S subscriptions', PRICES.snsPublish + endpoints * PRICES.snsHttpDelivery],
  ];
  const lines = [
    `### 8. Cost: USD per million events delivered to ${endpoints} endpoints (arm64, ${c.memoryMb} MB, batches of ${c.rows[0]?.batch ?? '—'})`,
    '',
    markdownTable(
      ['item', ...rows.map(({ r }) => `endpoints at ${r.delayMs} ms`)],
      [
        ['Lambda (duration from table 7 + requests)', ...rows.map((x) => usd(x.lambda))],
        [
          `SQS requests (${SQS_REQUESTS_PER_EVENT} per event: receive + delete, 10 messages each)`,
          ...rows.map((x) => usd(x.sqs)),
        ],
        ["CloudWatch Logs ingestion (measured output + Lambda's own lines)", ...rows.map((x) => usd(x.logs))],
        [
          `ledger, DELIVERY_LEDGER_MODE=redeliveries (default), ${failureRate * 100} % of events failing once`,
          ...rows.map(() => usd(cheapLedger)),
        ],
        ['ledger, DELIVERY_LEDGER_MODE=every-delivery', ...rows.map(() => usd(strongLedger))],
        ['**total, default ledger**', ...rows.map((x) => `**${usd(x.lambda + x.sqs + x.logs + cheapLedger)}**`)],
        ['total, every-delivery ledger', ...rows.map((x) => usd(x.lambda + x.sqs + x.logs + strongLedger))],
        ...alternatives.map(([label, price]) => [label, ...rows.map(() => usd(price * 1e6))]),
      ],
    ),
    '',
    `Assumptions: ${endpoints} endpoints, every event delivered on its first attempt except ${failureRate * 100} % that fail at one endpoint once and come back (their retry costs are not counted beyond the ledger); events under 64 KB (one SQS request unit); BatchGetItem eventually consistent (0.5 read unit per item up to 4 KB), one write unit per ledger item; no free tiers; the producer's SendMessage and the poller's empty receives are left out (the same for any consumer of the queue). The alternatives are priced for the same work from their published per-request prices, retries excluded.`,
    'Prices:',
    ...PRICE_SOURCES.map((source) => `- ${source}`),
  ];
  const ledgerVsCompute = rows.map((x) => cheapLedger / x.lambda);
  lines.push(
    '',
    `Target: the default ledger at ${failureRate * 100} % failures costs no more than the compute: ${ledgerVsCompute.map((v) => `${v.toFixed(2)}×`).join(' and ')} the Lambda cost: ${mark(ledgerVsCompute.every((v) => v <= 1))}.`,
  );
  return lines;
}

function shapingSection(rows: ShapingRow[]): string[] {
  const us = (s: Summary) =>
    s.n > 1 ? `${s.median.toFixed(2)} [${s.min.toFixed(2)}–${s.max.toFixed(2)}]` : s.median.toFixed(2);
  return [
    `### 9. Request shaping per delivery (${n(SHAPING_EVENTS)} events, in-process, µs: median [min–max] over the runs)`,
    '',
    markdownTable(
      ['Endpoint settings', 'µs per delivery'],
      rows.map((row) => [row.variant, us(row.usPerDelivery)]),
    ),
  ];
}

export function report(results: Results): string {
  const m = results.machine;
  const lines = [
    '## ingest-fanout benchmark',
    '',
    `- Command: \`${results.command}\` (${results.date}${results.elapsedS !== undefined ? `, ${results.elapsedS} s` : ''}), commit ${m.commit}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; load average at start ${m.loadavg}`,
    `- Node: ${m.childNode} for the runners and the endpoints, ${m.node} for the bench itself`,
    '- Endpoints: 3 loopback HTTP servers (and 3 https twins) in a separate Node process, answering 202 after the stated delay.',
  ];
  const sections = [
    results.throughput && throughputSection(results.throughput),
    results.fdLimit && fdLimitSection(results.fdLimit),
    results.slow && slowSection(results.slow),
    results.deadline && deadlineSection(results.deadline),
    results.coldStart && coldStartSection(results.coldStart),
    results.memory && memorySection(results.memory),
    results.cpu && cpuSection(results.cpu),
    results.instance && instanceSection(results.instance),
    results.instance && costSection(results.instance),
    results.shaping && shapingSection(results.shaping),
    results.outage && outageSection(results.outage),
    // Computed from the schedule and the prices: printed beside the cost table and the outage runs.
    (results.instance || results.outage) && parkingSection(),
  ];
  for (const section of sections) if (section) lines.push('', ...section);
  return lines.join('\n');
}
