import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import * as z from 'zod/mini';
import { isLoopbackHost } from '../../lib/config/config';
import { compileFilter, type Router } from '../../lib/subscription/routing';
import { secretRefs } from '../../lib/subscription/source';
import { readEndpointsFile } from '../endpoints-file';
import { UsageError } from './cli';
import { type DemoEndpoints, type FaultPlan, startDemoEndpoints } from './demo-endpoints';
import { generatedSecret, type SecretValues, startSecretStores, startTokenServer } from './stand-ins';

/** How a local run delivers a stage's endpoints file: what each endpoint became, and the handler's variables. */
export interface LocalEndpoints {
  /** ENDPOINTS_FILE and the AWS endpoints of the local secret stores. */
  env: Record<string, string>;
  /** Demo endpoints standing in for the file's non-loopback URLs, named after them. */
  demo?: DemoEndpoints;
  /** Each endpoint's filter, so the demo knows which events an endpoint should get. */
  routes: Map<string, Router>;
  /** One line per endpoint for the banner. */
  lines: string[];
  close(): Promise<void>;
}

function readSecretValues(path: string | undefined): SecretValues {
  if (!path) return { ssm: {}, secretsmanager: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--secrets ${path}: cannot read it (${(error as Error).message})`);
  }
  const document = parseDocument(text, { prettyErrors: true });
  const [problem] = document.errors;
  if (problem) {
    // The message's first line only: the parser's excerpt after it quotes the line, secret included.
    const [first = ''] = problem.message.split('\n');
    const at = problem.linePos?.[0];
    const where = at ? ` at line ${at.line}, column ${at.col}` : '';
    throw new UsageError(
      `--secrets ${path}: not valid YAML${where}: ${first.replace(/ at line \d+, column \d+:$/, '')} (quote a value holding ': ' or ' #')`,
    );
  }
  const result = SecretValuesSchema.safeParse(document.toJS() ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where =
      issue.code === 'unrecognized_keys' ? `unknown key '${issue.keys.join("', '")}'` : issue.path.join('.');
    // Never the values: they are secrets.
    throw new UsageError(
      `--secrets ${path}: ${where || 'the file'}: expected only 'ssm:' and 'secretsmanager:' maps of name: value strings`,
    );
  }
  const values = result.data;
  return { ssm: { ...values.ssm }, secretsmanager: { ...values.secretsmanager } };
}

const SecretMapSchema = z.optional(z.record(z.string(), z.string()));
// Strict: a misspelt store ('secretmanager:') would otherwise be skipped and a secret generated in its place.
const SecretValuesSchema = z.strictObject({ ssm: SecretMapSchema, secretsmanager: SecretMapSchema });

/**
 * Runs a stage's endpoints file locally: loopback URLs are kept (your own receivers), other URLs are replaced by
 * demo endpoints of the same name, other OAuth token URLs by a local token server; secret references are served by
 * local SSM / Secrets Manager stand-ins from `secretsPath` (missing ones get generated values).
 */
export async function startLocalEndpoints(
  path: string,
  secretsPath: string | undefined,
  faults: FaultPlan,
): Promise<LocalEndpoints> {
  const file = readEndpointsFile(path);
  const values = readSecretValues(secretsPath);
  const closers: (() => Promise<void>)[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ingest-endpoints-'));
  closers.push(async () => rmSync(dir, { recursive: true, force: true }));
  const close = async () => {
    for (const fn of closers.splice(0).reverse()) await fn().catch(() => {});
  };
  try {
    const generated: string[] = [];
    for (const ref of secretRefs(file.endpoints)) {
      const store = values[ref.store];
      if (store[ref.name] === undefined) {
        store[ref.name] = generatedSecret(ref.field);
        generated.push(`${ref.endpoint} ${ref.field}`);
      }
    }
    const remote = file.endpoints.filter((e) => !isLoopbackHost(e.url.hostname)).map((e) => e.name);
    const demo = remote.length > 0 ? await startDemoEndpoints(faults, remote) : undefined;
    if (demo) closers.push(() => demo.close());
    const needsToken = file.endpoints.some(
      (e) => e.auth?.kind === 'oauth2-client-credentials' && !isLoopbackHost(new URL(e.auth.tokenUrl).hostname),
    );
    const token = needsToken ? await startTokenServer() : undefined;
    if (token) closers.push(() => token.close());
    const stores = await startSecretStores(values);
    closers.push(() => stores.close());

    const raw = (file.document as { endpoints: Record<string, unknown>[] }).endpoints;
    const lines: string[] = [];
    const rewritten = file.endpoints.map((endpoint, i) => {
      const entry: Record<string, unknown> = { ...raw[i] };
      const stand = demo?.list.find((d) => d.name === endpoint.name);
      if (stand) entry.url = stand.url;
      const auth = endpoint.auth;
      if (token && auth?.kind === 'oauth2-client-credentials' && !isLoopbackHost(new URL(auth.tokenUrl).hostname)) {
        entry.auth = { ...auth, tokenUrl: token.url };
      }
      lines.push(
        `${endpoint.name.padEnd(10)} ${String(entry.url)}${stand ? ` (demo endpoint for ${endpoint.url.href})` : ''}`,
      );
      return entry;
    });
    if (generated.length > 0) lines.push(`generated secrets (not in --secrets): ${generated.join(', ')}`);
    const jsonPath = join(dir, 'endpoints.json');
    writeFileSync(jsonPath, JSON.stringify({ endpoints: rewritten }));
    return {
      env: {
        ENDPOINTS_FILE: jsonPath,
        AWS_ENDPOINT_URL_SSM: stores.url,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: stores.url,
      },
      ...(demo ? { demo } : {}),
      routes: new Map(file.endpoints.map((e) => [e.name, compileFilter(e.filter)])),
      lines,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
