import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** A command-line flag is missing or malformed; the message names the flag and what it accepts. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

export function parseFlags(argv: string[], spec: FlagSpec): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { ...spec, help: { type: 'boolean', short: 'h' } },
      strict: true,
      // --no-lanes: a boolean flag that is on by default is turned off this way.
      allowNegative: true,
    });
    return values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function intFlag(
  values: Record<string, string | boolean | undefined>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw.trim()) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max} (got '${String(raw)}')`);
  }
  return value;
}

export function rateFlag(values: Record<string, string | boolean | undefined>, name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !(value >= 0 && value <= 1)) {
    throw new UsageError(
      `--${name} must be a number from 0 to 1, e.g. 0.2 for one request in five (got '${String(raw)}')`,
    );
  }
  return value;
}

export function stringFlag(values: Record<string, string | boolean | undefined>, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' && raw !== '' ? raw : undefined;
}

/**
 * A file named on the command line, as an absolute path: relative to the folder npm was run from (INIT_CWD; npm runs
 * scripts from the repository root), else to the current folder.
 */
export function pathFlag(values: Record<string, string | boolean | undefined>, name: string): string | undefined {
  const raw = stringFlag(values, name);
  return raw === undefined ? undefined : resolve(process.env.INIT_CWD || process.cwd(), raw);
}

/** The SQS port of `npm start` and `npm run send`: LOCAL_SQS_PORT, else 9324. */
export function localSqsPort(env: Record<string, string | undefined>, fallback: number): number {
  const raw = env.LOCAL_SQS_PORT;
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65_535) {
    throw new UsageError(`LOCAL_SQS_PORT must be a port number from 0 to 65535 (got '${raw}')`);
  }
  return port;
}

/**
 * Ctrl-C (SIGINT) and SIGTERM: the first calls `stop`; another one a second or more later exits at once with 130.
 * tsx relays the terminal's Ctrl-C to the script a second time when it is slow to confirm: within a second, it is the
 * same Ctrl-C.
 */
export function onInterrupt(
  stop: () => void,
  write: (text: string) => void = (text) => process.stderr.write(text),
): void {
  let stoppingSince = 0;
  const onSignal = () => {
    if (stoppingSince > 0) {
      if (Date.now() - stoppingSince < 1000) return;
      write('\nforced exit\n');
      process.exit(130);
    }
    stoppingSince = Date.now();
    stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Runs a command: usage errors print the usage and exit 2; other errors print their message and exit 1. */
export function runCommand(usage: string, command: () => Promise<number>): void {
  command().then(
    (code) => process.exit(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        console.error(`${error.message}\n\n${usage}`);
        process.exit(2);
      }
      // Our typed errors say what to do; a plain or built-in error is a bug, so it keeps its stack.
      const builtIn = [Error, TypeError, RangeError, ReferenceError, SyntaxError];
      const known = error instanceof Error && !builtIn.some((type) => error.constructor === type);
      console.error(known ? `${error.name}: ${error.message}` : error);
      process.exit(1);
    },
  );
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
