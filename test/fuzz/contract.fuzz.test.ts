import { describe, inject, it } from 'vitest';
import { fuzzContract } from './property';

// A fixed number of scenarios sized for 30-90 s on 2 cores; `npm run fuzz -- --runs N --seed S [--lanes]` runs more.
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
// Lanes scenarios cost about three others each (more invocations, the lanes' rounds and their drain).
const LANE_RUNS = Number(process.env.FUZZ_LANE_RUNS ?? 20);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() ^ (Math.random() * 2 ** 31);

describe('the delivery contract under generated scenarios', () => {
  it(`keeps I1-I7 over ${RUNS} scenarios on one warm instance each (seed ${SEED})`, { timeout: 300_000 }, async () => {
    process.stderr.write(`fuzz: ${RUNS} scenarios, seed ${SEED}; replay with npm run fuzz -- --seed ${SEED}\n`);
    await fuzzContract({
      numRuns: RUNS,
      seed: SEED,
      // The first failing scenario, unshrunk, within the test's timeout: npm run fuzz -- --seed S --path P shrinks it.
      shrink: false,
      aws: { sqsEndpoint: inject('sqsEndpoint'), dynamodbEndpoint: inject('dynamodbEndpoint') },
    });
  });

  it(`keeps I1-I7 and L1-L3 over ${LANE_RUNS} lanes scenarios (seed ${SEED})`, { timeout: 300_000 }, async () => {
    process.stderr.write(
      `fuzz: ${LANE_RUNS} lanes scenarios, seed ${SEED}; replay with npm run fuzz -- --lanes --seed ${SEED}\n`,
    );
    await fuzzContract({
      numRuns: LANE_RUNS,
      seed: SEED,
      shrink: false,
      lanes: true,
      aws: { sqsEndpoint: inject('sqsEndpoint'), dynamodbEndpoint: inject('dynamodbEndpoint') },
    });
  });
});
