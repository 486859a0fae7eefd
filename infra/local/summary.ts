import type { FaultKind } from './demo-endpoints';
import type { DrainReport } from './drain';
import type { HandlerTelemetry } from './handler-output';

export interface SummaryExtras {
  faults?: Record<FaultKind, number>;
  handler?: HandlerTelemetry;
}

/** A one-line progress report while draining. */
export function progressLine(report: DrainReport): string {
  const delivered = report.endpoints
    ? report.endpoints.map((e) => `${e.name} ${e.delivered}/${e.delivered + e.missing}`).join(' · ')
    : `queue ${report.queueLeft} left · DLQ ${report.dlq.valid} valid`;
  return `[${(report.elapsedMs / 1000).toFixed(0).padStart(3)} s] ${delivered} · DLQ ${report.dlq.malformed}/${report.sent.malformed} malformed · redeliveries ${report.redeliveries}`;
}

/** The end-of-run summary: sent, delivered per endpoint, duplicates, dead-letters, redeliveries, lost. */
export function summaryLines(report: DrainReport, extras: SummaryExtras = {}): string[] {
  const { sent, dlq } = report;
  const lines = [
    `${report.drained ? 'drained' : 'NOT drained'} after ${(report.elapsedMs / 1000).toFixed(1)} s`,
    `  sent          ${sent.valid} valid CloudEvents + ${sent.malformed} malformed messages`,
  ];
  if (report.endpoints) {
    lines.push(
      `  delivered     ${report.endpoints.map((e) => `${e.name} ${e.delivered}/${e.delivered + e.missing}`).join(' · ')}`,
      `  duplicates    ${report.endpoints.map((e) => `${e.name} ${e.duplicates}`).join(' · ')}   (extra copies the endpoints received)`,
    );
  }
  const own = report.ownEndpoints ?? [];
  if (own.length > 0) {
    const them = own.length === 1 ? 'it' : 'them';
    lines.push(
      `  delivered     ${report.deliveredEverywhere}/${sent.valid} acknowledged by the handler and not dead-lettered (${own.join(', ')}: the demo cannot look inside ${them})`,
    );
  }
  const how = `(${dlq.quarantined} quarantined by the handler, ${dlq.redriven} redriven by SQS)`;
  // How they got there counts every letter: after the malformed count alone it read '1/1 malformed (6 quarantined…)'.
  const counts =
    dlq.valid > 0
      ? `${dlq.malformed}/${sent.malformed} malformed · ${dlq.valid} valid ${how}`
      : `${dlq.malformed}/${sent.malformed} malformed ${how} · 0 valid`;
  lines.push(
    `  dead-letter   ${counts} · ${dlq.duplicates} duplicate(s)`,
    `  redeliveries  ${report.redeliveries}   (receives of a message already received before)`,
  );
  if (extras.faults) {
    const f = extras.faults;
    lines.push(`  faults        5xx ${f.error} · reset ${f.reset} · slow ${f.slow} · hang ${f.hang}`);
  }
  if (extras.handler) {
    const m = extras.handler.metrics;
    const skipped = Object.values(extras.handler.byEndpoint).reduce((n, e) => n + (e.DeliverySkipped ?? 0), 0);
    lines.push(
      `  handler       deadline aborts ${m.DeadlineAborts ?? 0} · quarantine errors ${m.QuarantineErrors ?? 0} · backoff errors ${m.BackoffErrors ?? 0}${skipped ? ` · deliveries skipped by the ledger ${skipped}` : ''}`,
    );
  }
  if (!report.drained) {
    lines.push(
      `  undelivered   ${report.undelivered} still on their way (${report.queueLeft} message(s) on the queue)`,
    );
  }
  lines.push(`  lost          ${report.lost}`);
  const reasons = Object.entries(report.deadLettered);
  if (reasons.length > 0) {
    const total = reasons.reduce((n, [, count]) => n + count, 0);
    const why = reasons.map(([reason, count]) => `${count} ${reason}`).join(' · ');
    lines.push(`${total} valid event(s) dead-lettered: ${why}`);
  }
  return lines;
}
