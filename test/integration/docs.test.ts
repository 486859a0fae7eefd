import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { idempotencyKey } from '../../lib/event/event';
import { parseEndpointsDocument } from '../../lib/subscription/schema';
import { standardWebhooksKey } from '../../lib/subscription/signing';
import { secretRefs } from '../../lib/subscription/source';
import { envWithoutAws, ROOT } from '../support/cli';
import { packageTemplate } from '../support/package-stack';

// Every command the README and docs/ show is run: here, by another test (named below), or by CI. A new command in
// the docs fails this test until it is added to COMMANDS; a link or #anchor that leads nowhere fails it too.

type Runner =
  /** Run here (cheap); must exit 0. */
  | { by: 'doc-test' }
  /** Run by .ci/run, which must contain it. */
  | { by: 'ci' }
  /** Run by this test file, which must exist and contain `contains` (the script or flag it runs). */
  | { by: 'test'; file: string; contains: string }
  /** Too slow for the suite: every --flag it uses must appear in `npm run <script> -- --help`, run here. */
  | { by: 'flags'; script: string }
  /** `npm test` on some files: every path it names must exist (CI runs `npm test` on all of them). */
  | { by: 'paths' }
  /** Needs an AWS account: NOT run anywhere. Keep this list short. */
  | { by: 'aws' };

const test = (file: string, contains: string): Runner => ({ by: 'test', file, contains });
const AWS: Runner = { by: 'aws' };

const QUEUE_URL_FROM_STACK = `INGEST_QUEUE_URL=$(aws cloudformation describe-stacks --stack-name ingest-fanout-prod --region eu-west-1 --query "Stacks[0].Outputs[?OutputKey=='IngestQueueUrl'].OutputValue" --output text)`;
const DLQ_URL_FROM_STACK = `DLQ_URL=$(aws cloudformation describe-stacks --stack-name ingest-fanout-prod --region eu-west-1 --query "Stacks[0].Outputs[?OutputKey=='DeadLetterQueueUrl'].OutputValue" --output text)`;
const FIRST_EVENT = `aws sqs send-message --region eu-west-1 --queue-url "$INGEST_QUEUE_URL" --message-body '{"specversion":"1.0","id":"first-1","source":"urn:example:deploy-check","type":"com.example.check"}'`;
const WHSEC_NODE = `HMAC_KEY=$(node -e "console.log('whsec_' + require('crypto').randomBytes(32).toString('base64'))")`;
const WHSEC_OPENSSL = 'HMAC_KEY=whsec_$(openssl rand -base64 32)';
const LEDGER_KEY = `KEY=$(node -e 'console.log(require("crypto").createHash("sha256").update(JSON.stringify([process.argv[1], process.argv[2]])).digest("hex"))' 'urn:example:orders' 'order-123')`;

const COMMANDS: Record<string, Runner> = {
  // README and docs/local.md
  'npm ci': { by: 'ci' },
  'npm run demo': test('test/e2e/demo.test.ts', "'demo.ts'"),
  'npm run demo -- --events 300 --invalid 0 --fault-rate 0 --outage audit:8s --inflight-ceiling 100': test(
    'test/e2e/demo.test.ts',
    "'--outage', 'audit:8s'],\n        ...['--inflight-ceiling', '100',",
  ),
  'npm start': test('test/e2e/start-send.test.ts', "'start.ts'"),
  'npm run send -- --count 100': test('test/e2e/start-send.test.ts', "'send.ts', ['--count'"),
  'npm run send -- --help': { by: 'doc-test' },
  'npm run send -- --body \'{"specversion":"1.0","id":"mine-1","source":"urn:example:me","type":"com.example.test","data":{"hello":"world"}}\'':
    test('test/e2e/start-send.test.ts', "'send.ts', ['--body'"),
  'npm run send -- --file event.json': test('test/e2e/start-send.test.ts', "'send.ts', ['--file'"),
  'AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws sqs send-message --region us-east-1 --endpoint-url http://127.0.0.1:9324 --queue-url http://127.0.0.1:9324/123456789012/ingest-events --message-body file://event.json':
    test('test/e2e/start-send.test.ts', "'send-message', '--region', 'us-east-1', '--endpoint-url'"),
  'npx tsx infra/examples/receiver.ts --port 8080': test('test/e2e/receiver.test.ts', "'infra/examples/receiver.ts'"),
  'ENDPOINTS=mine=http://127.0.0.1:8080/events npm run demo -- --events 20 --invalid 2': test(
    'test/e2e/receiver.test.ts',
    'ENDPOINTS: `mine=',
  ),
  'npm run dlq': test('test/integration/operator-cli.test.ts', "['infra/cli/dlq.ts', '--queue-url']"),
  'npm run dlq -- --help': { by: 'doc-test' },
  'npm run redrive -- --max 2': test('test/integration/operator-cli.test.ts', "'--max'"),
  'npm run redrive -- --help': { by: 'doc-test' },
  'npm run chaos -- --events 10000': { by: 'flags', script: 'chaos' },
  'npm start -- --endpoints endpoints/example.yml': test(
    'test/e2e/subscriptions.test.ts',
    "'infra/local/start.ts',\n        '--endpoints',\n        file,",
  ),
  'npm start -- --endpoints endpoints/example.yml --secrets .local/secrets.yml': test(
    'test/e2e/subscriptions.test.ts',
    "file,\n        '--secrets',\n        secrets,",
  ),
  'npm run demo -- --endpoints endpoints/example.yml': { by: 'flags', script: 'demo' },
  // docs/first-stage.md (the others it shows are listed elsewhere)
  'npm run demo -- --endpoints endpoints/prod.yml': { by: 'flags', script: 'demo' },
  [WHSEC_NODE]: { by: 'doc-test' },
  [WHSEC_OPENSSL]: { by: 'doc-test' },
  'aws logs tail /aws/lambda/ingest-fanout-prod-ingest --region eu-west-1 --follow': AWS,
  'npm test': { by: 'ci' },
  // docs/development.md
  'npm test -- test/unit/': { by: 'paths' },
  'npm test -- test/unit/delivery/delivery.test.ts': { by: 'paths' },
  'npm test -- test/unit/settle/quarantine.test.ts test/unit/settle/backoff.test.ts test/unit/settle/ledger.test.ts test/unit/redrive/redrive.test.ts test/integration/resilience.test.ts':
    { by: 'paths' },
  'npm run test:node22': { by: 'ci' },
  'npm run lint': { by: 'ci' },
  'npm run typecheck': { by: 'ci' },
  '.ci/run': { by: 'ci' },
  'npm run bench': { by: 'flags', script: 'bench' },
  'npm run bench -- --quick': { by: 'flags', script: 'bench' },
  'npm run bench -- --only=throughput,deadline': { by: 'flags', script: 'bench' },
  'npm run bench -- --only=outage': { by: 'flags', script: 'bench' },
  'npm run bench -- --runs=3 --sizes=2000,5000': { by: 'flags', script: 'bench' },
  'npm test -- test/fuzz/contract.fuzz.test.ts': { by: 'paths' },
  'npm run fuzz -- --runs 2000': { by: 'flags', script: 'fuzz' },
  "npm run fuzz -- --runs 1 --seed 42 --path '13:0:0:1'": { by: 'flags', script: 'fuzz' },
  'npm run fuzz -- --count --runs 50 --seed 7': { by: 'flags', script: 'fuzz' },
  'npm run fuzz -- --lanes --runs 300': { by: 'flags', script: 'fuzz' },
  'npm run mutate': { by: 'flags', script: 'mutate' },
  'npm run mutate -- --mutate lib/batch/fanout.ts': { by: 'flags', script: 'mutate' },
  // docs/deploy.md and docs/configuration.md
  'npm run package': test('test/integration/package.test.ts', "'npm', ['run', 'package']"),
  'npm run package -- --stage prod': test('test/integration/docs.test.ts', "packageTemplate(['--stage', 'prod']"),
  'npm run deploy -- --stage prod --region eu-west-1': AWS,
  'npx osls info --stage prod --region eu-west-1 --verbose': AWS,
  'npx osls remove --stage prod --region eu-west-1': AWS,
  'aws sqs delete-queue --region eu-west-1 --queue-url "$DLQ_URL"': AWS,
  'aws dynamodb delete-table --region eu-west-1 --table-name ingest-fanout-prod-ledger': AWS,
  [QUEUE_URL_FROM_STACK]: AWS,
  [DLQ_URL_FROM_STACK]: AWS,
  [FIRST_EVENT]: AWS,
  'aws ssm put-parameter --region eu-west-1 --type SecureString --name /ingest-fanout/prod/analytics-token --value "$TOKEN"':
    AWS,
  'aws secretsmanager create-secret --region eu-west-1 --name ingest-fanout/prod/audit-key --secret-string "$HMAC_KEY"':
    AWS,
  // docs/operations.md
  [LEDGER_KEY]: { by: 'doc-test' },
  'aws dynamodb get-item --region eu-west-1 --table-name ingest-fanout-prod-ledger --key "{\\"id\\":{\\"S\\":\\"$KEY#analytics\\"}}"':
    AWS,
  'npm run dlq -- --queue-url "$DLQ_URL"': test('test/integration/operator-cli.test.ts', "'--queue-url', dlq.url"),
  'npm run redrive -- --from "$DLQ_URL"': test('test/integration/operator-cli.test.ts', "'--from', dlq.url"),
  'npm run redrive -- --from "$DLQ_URL" --to "$INGEST_QUEUE_URL"': test(
    'test/integration/operator-cli.test.ts',
    "'--to'",
  ),
  'npm run redrive -- --from "$DLQ_URL" --max 10': test('test/integration/operator-cli.test.ts', "'--max'"),
  'npm run endpoint -- pause audit --stage prod --region eu-west-1': test('test/integration/pause.test.ts', "'pause'"),
  'npm run endpoint -- status audit --stage prod --region eu-west-1': test(
    'test/integration/pause.test.ts',
    "'status'",
  ),
  'npm run endpoint -- resume audit --stage prod --region eu-west-1': test(
    'test/integration/pause.test.ts',
    "'resume'",
  ),
};

/** The --flags of a command, and their plain values (not $VARS or paths to a user's file), a test file never names. */
function untestedArguments(command: string, file: string): string[] {
  const args = command.split(' -- ')[1]?.split(/\s+/) ?? [];
  const missing: string[] = [];
  args.forEach((arg, i) => {
    const isFlag = arg.startsWith('--');
    // Counts may differ (a test sends fewer events); names (a stage, a file) may not.
    const isValue = !isFlag && args[i - 1]?.startsWith('--') && /^[\w.,=-]+$/.test(arg) && !/^\d+$/.test(arg);
    if ((isFlag || isValue) && !file.includes(`'${arg}'`)) missing.push(arg);
  });
  return missing;
}

const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];
const text = (file: string) => readFileSync(join(ROOT, file), 'utf8');

interface Block {
  file: string;
  lang: string;
  lines: string[];
}

function fencedBlocks(file: string): Block[] {
  const blocks: Block[] = [];
  let current: Block | undefined;
  for (const line of text(file).split('\n')) {
    const fence = /^\s*```(\S*)/.exec(line);
    if (fence && !current) current = { file, lang: fence[1] ?? '', lines: [] };
    else if (fence && current) {
      blocks.push(current);
      current = undefined;
    } else current?.lines.push(line.trim());
  }
  return blocks;
}

/** The commands of a shell block: continuation lines joined, trailing `# comments` and blank lines dropped. */
function commandsOf(block: Block): string[] {
  const joined = block.lines.join('\n').replace(/\\\n\s*/g, '');
  return joined
    .split('\n')
    .map((line) => line.replace(/\s+#\s.*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

const shellBlocks = DOCS.flatMap(fencedBlocks).filter((b) => ['sh', 'bash', 'shell'].includes(b.lang));
const shown = new Map<string, string>();
for (const block of shellBlocks) for (const command of commandsOf(block)) shown.set(command, block.file);

function sh(command: string): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile('sh', ['-c', command], { cwd: ROOT, env: envWithoutAws(), timeout: 60_000 }, (error, stdout, stderr) =>
      done({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, output: stdout + stderr }),
    );
  });
}

describe('every command in the docs is run', () => {
  it('every command shown is listed in COMMANDS, and every listed command is still shown', () => {
    const unlisted = [...shown].filter(([command]) => !(command in COMMANDS)).map(([c, file]) => `${file}: ${c}`);
    expect(unlisted, 'commands shown in the docs that no test or CI runs: add them to COMMANDS').toEqual([]);
    const stale = Object.keys(COMMANDS).filter((command) => !shown.has(command));
    expect(stale, 'COMMANDS entries no longer shown in the docs').toEqual([]);
  });

  it('no command hides in an untagged block (they would escape this test)', () => {
    const hidden = DOCS.flatMap(fencedBlocks)
      .filter((b) => !['sh', 'bash', 'shell'].includes(b.lang))
      .flatMap((b) => b.lines.filter((l) => /^(npm|npx|aws|node) /.test(l)).map((l) => `${b.file}: ${l}`));
    expect(hidden).toEqual([]);
  });

  it('needs an AWS account, so not run: only deploy, osls info/remove and aws CLI calls', () => {
    const aws = Object.entries(COMMANDS)
      .filter(([, runner]) => runner.by === 'aws')
      .map(([command]) => command);
    for (const command of aws) expect(command).toMatch(/^(npm run deploy |npx osls (info|remove) |aws |\w+=\$\(aws )/);
    // 12: deleting a stage by hand needs its two kept resources deleted (docs/deploy.md, Deleting a stage), and the
    // first-stage walk-through watches the function's log group.
    expect(aws.length).toBeLessThanOrEqual(12);
  });

  it('every aws, deploy, info and remove command names its --region (else it acts on the default region)', () => {
    const inline = DOCS.flatMap((file) =>
      [
        ...text(file)
          .replace(/```[\s\S]*?```/g, '')
          .matchAll(/`([^`\n]+)`/g),
      ].map((m) => [m[1]!, file] as const),
    );
    // Bare script names in prose (`npm run deploy`) and account-wide aws commands (sso, configure) are not calls.
    const regional =
      /(^|\$\(|\s)(aws (?!sso |configure)[\w-]+ [\w-]|npm run deploy --|npx osls (deploy|info|remove)\b)/;
    const missing = [...shown, ...inline]
      .filter(([command]) => regional.test(command) && !/--region \S/.test(command))
      .map(([command, file]) => `${file}: ${command}`);
    expect(missing).toEqual([]);
  });

  it('each command mapped to a test file is in that file, with every flag and plain value it passes', () => {
    const untested: string[] = [];
    for (const [command, runner] of Object.entries(COMMANDS)) {
      if (runner.by !== 'test') continue;
      expect(existsSync(join(ROOT, runner.file)), `${command}: ${runner.file} exists`).toBe(true);
      expect(text(runner.file), `${command}: ${runner.file} runs it`).toContain(runner.contains);
      const missing = untestedArguments(command, text(runner.file));
      if (missing.length) untested.push(`${command}: ${runner.file} never passes ${missing.join(' ')}`);
    }
    expect(untested).toEqual([]);
  });

  it('each command mapped to CI is in .ci/run', () => {
    const ci = text('.ci/run');
    for (const [command, runner] of Object.entries(COMMANDS)) {
      if (runner.by !== 'ci') continue;
      if (command === '.ci/run') expect(existsSync(join(ROOT, '.ci/run'))).toBe(true);
      else expect(ci, command).toContain(command);
    }
  });

  it('each file an `npm test -- <paths>` command names exists', () => {
    for (const [command, runner] of Object.entries(COMMANDS)) {
      if (runner.by !== 'paths') continue;
      for (const path of command.split(' -- ')[1]!.split(' ')) expect(existsSync(join(ROOT, path)), path).toBe(true);
    }
  });

  it('the long-running commands use only flags their --help lists', async () => {
    const scripts = new Set(Object.values(COMMANDS).flatMap((r) => (r.by === 'flags' ? [r.script] : [])));
    for (const script of scripts) {
      const help = await sh(`npm run --silent ${script} -- --help`);
      expect(help.code, help.output).toBe(0);
      for (const [command, runner] of Object.entries(COMMANDS)) {
        if (runner.by !== 'flags' || runner.script !== script) continue;
        for (const flag of command.match(/--[a-z][a-z-]*/g) ?? []) expect(help.output, command).toContain(flag);
      }
    }
  }, 120_000);

  it.each(
    Object.entries(COMMANDS)
      .filter(([command, runner]) => runner.by === 'doc-test' && !/^[A-Z_]+=/.test(command))
      .map(([command]) => command),
  )(
    'runs: %s',
    async (command) => {
      const result = await sh(command);
      expect(result.code, result.output).toBe(0);
      expect(result.output).toContain('Usage');
    },
    60_000,
  );

  it.each([WHSEC_NODE, WHSEC_OPENSSL])(
    'runs the signing secret one-liner, which gives a Standard Webhooks secret of 32 bytes: %s',
    async (command) => {
      const result = await sh(`${command} && echo "$HMAC_KEY"`);
      const secret = result.output.trim();
      expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
      expect(standardWebhooksKey(secret, 'HMAC_KEY')).toHaveLength(32);
      // What the receiver's library makes of it: it signs and verifies with it.
      const signed = new Webhook(secret).sign('m-1', new Date(), '{}');
      expect(signed).toMatch(/^v1,/);
    },
  );

  it('the walk-through endpoints file is valid, and its secrets are the ones the walk-through creates', () => {
    const guide = text('docs/first-stage.md');
    const yaml = guide.match(/```yaml\n([\s\S]*?)```/)?.[1] ?? '';
    const endpoints = parseEndpointsDocument(parse(yaml), 'docs/first-stage.md');
    const refs = secretRefs(endpoints).map((ref) => `${ref.store}:${ref.name}`);
    expect(refs.sort()).toEqual([
      'secretsmanager:ingest-fanout/prod/audit-key',
      'ssm:/ingest-fanout/prod/analytics-token',
    ]);
    expect(guide).toContain('--type SecureString --name /ingest-fanout/prod/analytics-token');
    expect(guide).toContain('create-secret --region eu-west-1 --name ingest-fanout/prod/audit-key');
  });

  it("runs the ledger key one-liner, which gives the function's own key", async () => {
    const command = Object.keys(COMMANDS).find((c) => c.startsWith('KEY='))!;
    const result = await sh(`${command} && echo "$KEY"`);
    expect(result.output.trim()).toBe(idempotencyKey('urn:example:orders', 'order-123'));
  });
});

describe('messages quoted in docs/troubleshooting.md', () => {
  // Printed by tools of others, not by this project's code.
  const OTHERS = ['Could not download the Serverless Framework binary'];

  function sourceText(dir: string): string {
    return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((name) => /\.(ts|js|cjs)$/.test(name))
      .map((name) => text(join(dir, name)))
      .join('\n');
  }

  it('are still printed by the code (the literal parts between <placeholders> and …)', () => {
    const source = ['lib', 'infra', 'functions'].map(sourceText).join('\n');
    const stale: string[] = [];
    for (const [, quoted] of text('docs/troubleshooting.md').matchAll(/^\| `([^`]+)`/gm)) {
      const parts = quoted!
        .split(/<[^>]*>|…|\bN\b/)
        .map((part) => part.replace(/^[\s'":]+|[\s'":]+$/g, ''))
        .filter((part) => part.length >= 12 && !OTHERS.includes(part));
      for (const part of parts) if (!source.includes(part)) stale.push(`${quoted}: '${part}'`);
    }
    expect(stale).toEqual([]);
  });
});

describe("the deploy guide's first check", () => {
  it('packages the prod stage once its params block is written as docs/deploy.md says', async () => {
    const guide = text('docs/deploy.md');
    expect(guide).toContain('uncomment the `prod:` block under `params:`');
    // The commented example block in serverless.yml, uncommented.
    const uncomment = (yml: string) =>
      yml.replace(/^ {2}# (prod:\n(?: {2}# {3}.*\n)+)/m, (block) => block.replace(/^ {2}# /gm, '  '));
    expect(uncomment(text('serverless.yml'))).toMatch(/^ {2}prod:\n {4}endpoints: analytics=/m);
    const template = await packageTemplate(['--stage', 'prod'], 'osls', uncomment);
    const variables = (
      template.Resources.IngestLambdaFunction!.Properties!.Environment as { Variables: Record<string, unknown> }
    ).Variables;
    expect(variables.POWERTOOLS_SERVICE_NAME).toBe('ingest-fanout-prod');
    expect(String(variables.ENDPOINT_CREDENTIALS)).toContain('/ingest-fanout/prod/analytics-token');
  }, 120_000);
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes, repeats numbered. */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  let inFence = false;
  for (const line of text(file).split('\n')) {
    if (/^\s*```/.test(line)) inFence = !inFence;
    const heading = inFence ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    result.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return result;
}

describe('links in the docs', () => {
  it('every relative link and #anchor resolves', () => {
    const broken: string[] = [];
    for (const file of DOCS) {
      const body = text(file).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of body.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, anchor] = target!.split('#');
        const resolved = path ? relative(ROOT, resolve(dirname(join(ROOT, file)), path)) : file;
        if (!existsSync(join(ROOT, resolved))) broken.push(`${file}: ${target} (no file ${resolved})`);
        else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) {
          broken.push(`${file}: ${target} (no heading #${anchor} in ${resolved})`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('the README links to every guide, and every guide links back to the README', () => {
    const readme = text('README.md');
    for (const file of DOCS.filter((f) => f !== 'README.md')) {
      expect(readme, `README links to ${file}`).toContain(`](${file}`);
      expect(text(file), `${file} links back`).toContain('](../README.md)');
    }
  });
});

/** The project's text files: what a moved file's old path could still be named in. */
function projectFiles(dir = ''): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.name.startsWith('.') || entry.name === 'node_modules') return [];
    if (entry.isDirectory()) return projectFiles(path);
    return /\.(md|ts|cts|cjs|js|yml)$/.test(entry.name) ? [path] : [];
  });
}

describe('the layout the docs describe', () => {
  it('every project path a guide, a config or a comment names exists (none left from before a move)', () => {
    const stale: string[] = [];
    for (const file of projectFiles()) {
      // Not preceded by a package or folder name: 'undici/lib/…' is a module's own path, not ours.
      const named = text(file).matchAll(
        /(?<![\w./-])(?:lib|infra|test|functions)\/[\w./-]*\w\.(?:ts|cts|cjs|js|yml)\b/g,
      );
      for (const [path] of named) {
        // The framework's source, quoted where its behaviour is worked around.
        if (!existsSync(join(ROOT, path)) && !existsSync(join(ROOT, 'node_modules/osls', path))) {
          stale.push(`${file}: ${path}`);
        }
      }
    }
    expect(stale).toEqual([]);
  });

  it('the suite table of docs/development.md names test files that exist', () => {
    const rows = text('docs/development.md').matchAll(/^\| `((?:unit|integration|fuzz|e2e)\/[^`]+)` \|/gm);
    const named = [...rows].map(([, path]) => path!);
    expect(named.length).toBeGreaterThan(20);
    // A glob row names a folder of test files.
    const missing = named.filter((path) => !existsSync(join(ROOT, 'test', path.includes('*') ? dirname(path) : path)));
    expect(missing).toEqual([]);
  });

  it('names every folder of lib/ and test/unit/, and no folder that is gone', () => {
    const layout = /^Layout: [\s\S]*?\n\n/m.exec(text('docs/development.md'))?.[0] ?? '';
    const folders = (dir: string) =>
      readdirSync(join(ROOT, dir), { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name);
    for (const folder of folders('lib'))
      expect(layout, `lib/${folder}/ in the Layout paragraph`).toContain(`\`${folder}/\``);
    for (const folder of folders('test/unit')) {
      expect(folders('lib').concat('infra', 'bench'), `test/unit/${folder}/ mirrors a lib/ folder`).toContain(folder);
    }
    for (const [, named] of layout.matchAll(/`([a-z-]+)\/`/g)) {
      if (named === 'lib' || named === 'infra') continue;
      expect(existsSync(join(ROOT, 'lib', named!)), `lib/${named}/ named in the Layout paragraph exists`).toBe(true);
    }
  });
});
