/**
 * Figure 1b: the same batch under Lambda's limit of 1,024 open files per execution environment. A runner that opens
 * a connection per request runs out of file descriptors (EMFILE) long before the batch is done.
 */
import { execFileSync } from 'node:child_process';
import type { Bundles, HostKind } from '../bundles';
import type { EndpointFleet } from '../fleet';
import { RunnerHost } from '../hostProcess';
import { log } from '../measure';
import { hostSpec, LABELS } from '../subject';

export const LAMBDA_MAX_FILES = 1024;
export const FD_EVENTS = [300, 2000];
export const FD_DELAY_MS = 5;

export interface FdLimitRow {
  label: string;
  events: number;
  ms: number;
  failed: number;
}

/** Lowers a running process's open-file limit with util-linux's prlimit; false when that is not possible here. */
function limitFiles(pid: number, max: number): boolean {
  try {
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${max}:${max}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function fdLimit(fleet: EndpointFleet, bundles: Bundles): Promise<FdLimitRow[] | undefined> {
  const rows: FdLimitRow[] = [];
  const kinds: HostKind[] = ['handler', 'naive', 'powertools'];
  for (const kind of kinds) {
    const host = await RunnerHost.start(hostSpec(kind, bundles, fleet));
    try {
      if (host.pid === undefined || !limitFiles(host.pid, LAMBDA_MAX_FILES)) {
        log('  prlimit is not available: the file-descriptor table is skipped');
        return undefined;
      }
      for (const events of FD_EVENTS) {
        await fleet.reset();
        await fleet.delays(fleet.urls.map(() => FD_DELAY_MS));
        const run = await host.run(events);
        rows.push({ label: LABELS[kind], events, ms: run.ms, failed: run.failed });
      }
    } finally {
      await host.close();
    }
  }
  log(
    `  under ${LAMBDA_MAX_FILES} open files: ${rows.map((r) => `${r.label} × ${r.events}: ${r.failed} failed`).join(', ')}`,
  );
  return rows;
}
