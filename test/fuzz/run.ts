// npm run fuzz -- [--runs N] [--seed S] [--path P] [--lanes] [--ignore I1-4xx,I6] [--no-credential-faults]: the contract fuzz outside vitest, for long runs and replays.
import { writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { TEST_ENV } from '../support/env';
import { startLocalServers } from '../support/global-setup';

Object.assign(process.env, TEST_ENV);
// Written straight to fd 2: during an invocation the fuzz captures process.stderr to read the log lines.
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (error: unknown) => {
    writeSync(
      2,
      `fuzz: ${event} (a crash of the Lambda process): ${error instanceof Error ? error.stack : String(error)}\n`,
    );
    process.exit(2);
  });
}
const { countViolations, fuzzContract } = await import('./property');
const { coverage } = await import('./contract');

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' },
    seed: { type: 'string' },
    path: { type: 'string' },
    ignore: { type: 'string' },
    'no-credential-faults': { type: 'boolean', default: false },
    count: { type: 'boolean', default: false },
    lanes: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'Usage: npm run fuzz -- [--runs N] [--seed S] [--path P] [--ignore I1-4xx,I6] [--no-credential-faults] [--count]\n' +
      '  --runs N                 scenarios to run (default 200)\n' +
      '  --seed S                 seed (default: a new one, printed)\n' +
      "  --path P                 fast-check's replay path, printed with a failure (with the failure's --seed)\n" +
      '  --ignore I1-4xx,I6       triage only: skip the named checks\n' +
      '  --no-credential-faults   triage only: credential sources never fail\n' +
      '  --count                  run all N scenarios, no shrinking, and count those that break each rule\n' +
      '  --lanes                  lanes scenarios (LANE_QUEUE_URL_PREFIX, parking, pause, lane faults) instead\n',
  );
  process.exit(0);
}
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() ^ (Math.random() * 2 ** 31);
const runs = Number(values.runs);
const ignored = new Set(values.ignore ? values.ignore.split(',') : []);
const credentialFaults = !values['no-credential-faults'];
if (!credentialFaults) process.stderr.write('fuzz: credential sources never fail (triage only)\n');
if (ignored.size > 0) process.stderr.write(`fuzz: NOT checking ${[...ignored].join(', ')} (triage only)\n`);
const servers = await startLocalServers();
const started = Date.now();
process.stderr.write(
  `fuzz: ${runs} ${values.lanes ? 'lanes ' : ''}scenarios, seed ${seed}${values.path ? `, path ${values.path}` : ''}\n`,
);
try {
  const options = { numRuns: runs, seed, ignored, credentialFaults, aws: servers, lanes: values.lanes };
  if (values.count) {
    const { failed, byRule, first } = await countViolations(options);
    for (const message of first.values()) process.stderr.write(`fuzz: e.g. ${message.slice(0, 400)}\n`);
    const rules = [...byRule].map(([rule, n]) => `${rule}: ${n}`).join(', ');
    process.stderr.write(
      `fuzz: ${failed} of ${runs} scenarios broke a rule${rules ? ` (${rules})` : ''} (seed ${seed})\n`,
    );
    if (failed > 0) process.exitCode = 1;
  } else {
    await fuzzContract({ ...options, ...(values.path ? { path: values.path } : {}) });
    process.stderr.write(
      `fuzz: ${runs} scenarios passed in ${Math.round((Date.now() - started) / 1000)} s (seed ${seed})\n`,
    );
  }
} catch (error) {
  const cause = error instanceof Error && error.cause instanceof Error ? `\n${error.cause.message}` : '';
  writeSync(2, `${error instanceof Error ? error.message : String(error)}${cause}\n`);
  process.exitCode = 1;
} finally {
  process.stderr.write(`fuzz: exercised ${[...coverage].map(([what, n]) => `${what}: ${n}`).join('; ')}\n`);
  await servers.close();
}
