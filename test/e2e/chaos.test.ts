import { beforeAll, describe, expect, it } from 'vitest';
import { type ChaosReport, runChaos } from '../../infra/local/chaos-scenario';

// 2,000 valid events and 100 malformed ones through the real handler, local SQS and three demo endpoints, while
// endpoints fail and the quarantine queue is down for a while (the full size is `npm run chaos -- --events 10000`).
const EVENTS = 2000;
const MALFORMED = 100;

describe('chaos: the local pipeline under injected faults', () => {
  // One run, made before the tests: each test reads it, none depends on another test having passed.
  let report: ChaosReport;
  beforeAll(async () => {
    report = await runChaos({ events: EVENTS, malformed: MALFORMED, faultRate: 0.1, timeoutMs: 100_000 });
  }, 150_000);

  it('delivers every valid event to every endpoint and dead-letters every malformed one, losing nothing', () => {
    const { drain } = report;
    expect(drain.drained).toBe(true);
    expect(drain.lost).toBe(0);
    expect(drain.queueLeft).toBe(0);
    expect(drain.endpoints).toEqual([
      expect.objectContaining({ name: 'analytics', delivered: EVENTS, missing: 0 }),
      expect.objectContaining({ name: 'audit', delivered: EVENTS, missing: 0 }),
      expect.objectContaining({ name: 'search', delivered: EVENTS, missing: 0 }),
    ]);
    expect(drain.dlq).toMatchObject({ malformed: MALFORMED, valid: 0, unknown: 0 });
  });

  it('really went through the faults it claims: 5xx, resets, slow answers, hangs, deadlines, a quarantine outage', () => {
    expect(report.faults.error).toBeGreaterThan(0);
    expect(report.faults.reset).toBeGreaterThan(0);
    expect(report.faults.slow).toBeGreaterThan(0);
    // Baseline hangs plus at least the stall's 100.
    expect(report.faults.hang).toBeGreaterThanOrEqual(100);
    expect(report.quarantineRefused).toBeGreaterThanOrEqual(30);
    // The handler's own EMF metrics: deliveries were cut by the invocation deadline, and quarantine calls failed.
    expect(report.handler.metrics.DeadlineAborts).toBeGreaterThan(0);
    expect(report.handler.metrics.QuarantineErrors).toBeGreaterThan(0);
    // Failed records came back (the redeliveries); every message left the queue once: acknowledged, or redriven.
    expect(report.mapping.redelivered).toBeGreaterThan(0);
    expect(report.mapping.acknowledged + report.drain.dlq.redriven).toBe(EVENTS + MALFORMED);
    // The handler quarantined malformed records itself, without waiting for SQS to give up on them.
    expect(report.drain.dlq.quarantined).toBeGreaterThan(0);
  });
});
