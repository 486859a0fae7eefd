import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { CHILD_NODE, ROOT } from './paths';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  childNode: string;
  /** 1-minute load average when the run started: other work on the machine shows up here. */
  loadavg: string;
  /** The commit measured, with "+changes" when the working tree differs from it. */
  commit: string;
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', cwd: ROOT }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
      cwd: ROOT,
    });
    return dirty.trim() ? `${head}+changes` : head;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

export function machine(): Machine {
  const cpus = os.cpus();
  let childNode = process.version;
  try {
    childNode = execFileSync(CHILD_NODE, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // Falls back to this process's version: CHILD_NODE is then this very binary.
  }
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    childNode,
    loadavg: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    commit: commit(),
  };
}
