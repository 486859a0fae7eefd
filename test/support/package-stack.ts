import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ROOT = new URL('../..', import.meta.url).pathname;

export type Json = Record<string, unknown>;
export interface CfnResource {
  Type: string;
  Condition?: string;
  DependsOn?: string | string[];
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
  Properties?: Json;
}
export interface Template {
  Resources: Record<string, CfnResource>;
  Conditions?: Record<string, unknown>;
  Parameters?: Record<string, unknown>;
  Outputs?: Record<string, Json>;
}

/**
 * The stage variants the deploy checks cover: the default stage, FIFO, credentials + alarm e-mail + KMS key, the
 * example endpoints file (endpoints/example.yml) notifying an existing alarm topic, and a standard stage without lanes.
 */
export const VARIANTS = {
  standard: [],
  fifo: ['--param=fifo=true', '--param=batchSize=10'],
  secured: [
    '--param=endpointCredentials=analytics=bearer:ssm:/ingest-fanout/dev/analytics-token,audit=hmac:secretsmanager:ingest-fanout/dev/audit-key',
    '--param=alarmEmail=oncall@example.com',
    '--param=credentialsKmsKeyArn=arn:aws:kms:us-east-1:123456789012:key/0d4c2b7e-1f3a-4c5d-9e8f-0a1b2c3d4e5f',
  ],
  // Lanes with an endpoints file that has a budgeted endpoint.
  example: [
    '--stage',
    'example',
    '--param=alarmTopicArn=arn:aws:sns:us-east-1:123456789012:oncall',
    '--param=lanes=true',
  ],
  // A standard stage that opts out of lanes (the default gives standard stages lanes).
  noLanes: ['--param=lanes=false'],
} as const;
export type Variant = keyof typeof VARIANTS;

/** The environment the framework gets: no AWS credentials, region or profile of any kind. */
function offlineEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AWS_')));
}

export type Framework = 'osls' | 'serverless3';
const CLI: Record<Framework, string> = {
  osls: 'node_modules/osls/bin/serverless.js',
  serverless3: 'node_modules/serverless3/bin/serverless.js',
};

/**
 * Packages the service as `npm run package` does, in a private copy of the sources (serverless-esbuild builds in the
 * service directory, so test files packaging at the same time would overwrite each other's build), and hands `use` the
 * copy's `.serverless/` folder (template and artifact) before removing the copy.
 */
export async function packageCopy<T>(
  args: readonly string[],
  use: (serverlessDir: string) => T,
  framework: Framework = 'osls',
  editServerlessYml: (text: string) => string = (text) => text,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-stack-'));
  try {
    for (const entry of ['serverless.yml', 'package.json', 'tsconfig.json', 'infra', 'lib', 'functions', 'endpoints']) {
      cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
    }
    const yml = join(dir, 'serverless.yml');
    writeFileSync(yml, editServerlessYml(readFileSync(yml, 'utf8')));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    await run(process.execPath, [join(ROOT, CLI[framework]), 'package', ...args], {
      cwd: dir,
      env: offlineEnv(),
      maxBuffer: 16 * 1024 * 1024,
    });
    return use(join(dir, '.serverless'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Packages the service as `npm run package` does (packageCopy) and returns the CloudFormation template it wrote. */
export function packageTemplate(
  args: readonly string[],
  framework: Framework = 'osls',
  editServerlessYml: (text: string) => string = (text) => text,
): Promise<Template> {
  return packageCopy(
    args,
    (out) => JSON.parse(readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8')) as Template,
    framework,
    editServerlessYml,
  );
}

/** Packages the variants one after the other (the machine is small), once per test file. */
export async function packageVariants<V extends Variant>(variants: readonly V[]): Promise<Record<V, Template>> {
  const templates = {} as Record<V, Template>;
  for (const variant of variants) templates[variant] = await packageTemplate(VARIANTS[variant]);
  return templates;
}

export function resourcesOfType(template: Template, type: string): [string, CfnResource][] {
  return Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);
}

/** A deep copy to mutate in a test that shows a check failing. */
export function mutate(template: Template, change: (copy: Template) => void): Template {
  const copy = structuredClone(template);
  change(copy);
  return copy;
}

/** The id of the stage's credentials policy, which changes with its grants (infra/stage/iam.ts namedByGrants). */
export function credentialsPolicyId(template: Template): string {
  const ids = Object.keys(template.Resources).filter((id) => id.startsWith('IngestCredentialsPolicy'));
  if (ids.length !== 1) throw new Error(`expected one credentials policy, found ${ids.join(', ') || 'none'}`);
  return ids[0]!;
}
