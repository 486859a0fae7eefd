import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { ROOT, type Template } from './package-stack';

// cfn-lint, AWS's CloudFormation linter, over packaged templates; what infra/cfn-lint.yml accepts (with its reason)
// is left out of the findings.

const run = promisify(execFile);

interface Accepted {
  rule: string;
  path: string;
  message: string;
  reason: string;
}

interface Finding {
  Filename: string;
  Level: string;
  Message: string;
  Rule: { Id: string };
  Location: { Path: (string | number)[] };
}

export function acceptedFindings(): Accepted[] {
  return (parse(readFileSync(join(ROOT, 'infra/cfn-lint.yml'), 'utf8')) as { accepted: Accepted[] }).accepted;
}

export interface LintFinding {
  template: string;
  rule: string;
  path: string;
  message: string;
}

const isAccepted = (finding: LintFinding, accepted: Accepted[]) =>
  accepted.some(
    (a) => a.rule === finding.rule && finding.path.startsWith(a.path) && finding.message.includes(a.message),
  );

/** The findings infra/cfn-lint.yml does not accept, as "<template> <rule> <path>: <message>". */
export function notAccepted(findings: LintFinding[], accepted: Accepted[] = acceptedFindings()): string[] {
  return findings
    .filter((f) => !isAccepted(f, accepted))
    .map((f) => `${f.template} ${f.rule} ${f.path}: ${f.message}`)
    .sort();
}

/** Every error and warning cfn-lint reports on each template (named by its key). */
export async function cfnLint(templates: Record<string, Template>): Promise<LintFinding[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-cfn-lint-'));
  try {
    const files = Object.entries(templates).map(([name, template]) => {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(template, null, 2));
      return file;
    });
    // One process for all templates: cfn-lint's start-up is most of its time. It exits non-zero on any finding.
    const output = await run('cfn-lint', ['--format', 'json', '--', ...files], { maxBuffer: 64 * 1024 * 1024 }).then(
      ({ stdout }) => stdout,
      (error: { stdout?: string; code?: unknown }) => {
        if (typeof error.code !== 'number' || !error.stdout) throw error;
        return error.stdout;
      },
    );
    return (JSON.parse(output) as Finding[])
      .filter((f) => ['Error', 'Warning'].includes(f.Level))
      .map((f) => ({
        template: f.Filename.slice(dir.length + 1, -'.json'.length),
        rule: f.Rule.Id,
        path: f.Location.Path.join('/'),
        message: f.Message,
      }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
