import fc from 'fast-check';
import { runScenario } from './contract';
import { InvariantViolation } from './invariants';
import type { LocalAws } from './local-aws';
import { laneScenarioArb, scenarioArb } from './scenario';

export interface FuzzOptions {
  numRuns: number;
  /** The local SQS and dynalite servers (the DLQ and redrive, the delivery ledger). */
  aws: LocalAws;
  seed: number;
  /** fast-check's replay path, printed with a failure. */
  path?: string;
  /** Shrink a failing scenario (default): minutes of real sockets; the vitest file skips it to report within its timeout. */
  shrink?: boolean;
  /** Triage only (never in CI): invariants not checked, to look past a known defect. */
  ignored?: ReadonlySet<string>;
  /** Triage only (never in CI): no credential source that throws or is slow. */
  credentialFaults?: boolean;
  /** Lanes scenarios (laneScenarioArb) instead of the others. */
  lanes?: boolean;
}

function arbitrary(options: FuzzOptions) {
  const generation = { credentialFaults: options.credentialFaults ?? true };
  return options.lanes ? laneScenarioArb(generation) : scenarioArb(generation);
}

/** Runs the contract over generated scenarios; on failure, throws fast-check's report (seed, path, shrunk scenario). */
export async function fuzzContract(options: FuzzOptions): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arbitrary(options), (scenario) => runScenario(scenario, options.aws, options.ignored)),
    {
      numRuns: options.numRuns,
      seed: options.seed,
      ...(options.path ? { path: options.path } : {}),
      // Every scenario talks to real sockets; a shrink step costs seconds, so cap it.
      maxSkipsPerRun: 0,
      endOnFailure: options.shrink === false,
      verbose: 0,
    },
  );
}

/**
 * Runs every one of `numRuns` generated scenarios (no stop at the first failure, no shrinking) and counts the
 * scenarios that broke each rule: how often the fuzz catches a seeded bug.
 */
export async function countViolations(
  options: FuzzOptions,
): Promise<{ failed: number; byRule: Map<string, number>; first: Map<string, string> }> {
  const scenarios = fc.sample(arbitrary(options), {
    numRuns: options.numRuns,
    seed: options.seed,
  });
  const byRule = new Map<string, number>();
  const first = new Map<string, string>();
  let failed = 0;
  for (const scenario of scenarios) {
    try {
      await runScenario(scenario, options.aws, options.ignored);
    } catch (error) {
      failed++;
      const rule = error instanceof InvariantViolation ? error.invariant : 'error';
      byRule.set(rule, (byRule.get(rule) ?? 0) + 1);
      if (!first.has(rule)) first.set(rule, error instanceof Error ? error.message : String(error));
    }
  }
  return { failed, byRule, first };
}
