import { type ChildProcess, fork } from 'node:child_process';
import type { HostCommand, HostMemory, HostReply, HostRun } from './host';
import { CHILD_NODE, ROOT } from './paths';

type CommandBody = HostCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

export interface HostSpec {
  /** Short id used in results JSON. */
  id: string;
  label: string;
  /** A host bundle built by bundles.ts. */
  bundle: string;
  env: Record<string, string>;
  /** Node flags, e.g. the heap limits Lambda sets for a memory size. */
  execArgv?: string[];
}

/** A runner in its own process (host.ts): like one Lambda instance, warm after its first run. */
export class RunnerHost {
  readonly id: string;
  readonly label: string;
  readonly #child: ChildProcess;
  #nextId = 1;
  readonly #pending = new Map<number, (reply: HostReply) => void>();
  #output = 0;
  #exited = false;
  /** The end of what the runner wrote to stderr: why it died, when it does (e.g. V8's "heap out of memory"). */
  #stderrTail = '';

  private constructor(spec: HostSpec, child: ChildProcess) {
    this.id = spec.id;
    this.label = spec.label;
    this.#child = child;
    child.on('message', (reply: HostReply) => {
      if (reply.type === 'ready') return;
      this.#pending.get(reply.id)?.(reply);
      this.#pending.delete(reply.id);
    });
    // What the runner writes (its log lines) is counted, not shown.
    child.stdout?.on('data', (chunk: Buffer) => {
      this.#output += chunk.length;
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#output += chunk.length;
      this.#stderrTail = (this.#stderrTail + chunk.toString()).slice(-2000);
    });
  }

  #death(op: string, code: number | null, signal: NodeJS.Signals | null): Error {
    const reason = /FATAL ERROR: [^\n]*|heap out of memory|EMFILE[^\n]*/.exec(this.#stderrTail)?.[0];
    return new Error(
      `runner ${this.id} died during '${op}' (${signal ?? `exit code ${code}`})${reason ? `: ${reason.trim()}` : ''}`,
    );
  }

  static async start(spec: HostSpec): Promise<RunnerHost> {
    const child = fork(spec.bundle, [], {
      cwd: ROOT,
      execPath: CHILD_NODE,
      // Not this process's flags (tsx's loader): the host runs the bundle the way Lambda would.
      execArgv: spec.execArgv ?? [],
      env: { PATH: process.env.PATH ?? '', ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const host = new RunnerHost(spec, child);
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number | null) =>
        reject(
          new Error(`runner ${spec.id} (${spec.bundle}) exited with code ${code} while loading:\n${host.#stderrTail}`),
        );
      child.once('exit', onExit);
      child.once('error', reject);
      child.on('message', (reply: HostReply) => {
        if (reply.type !== 'ready') return;
        child.off('exit', onExit);
        resolve();
      });
    });
    child.once('exit', () => {
      host.#exited = true;
    });
    return host;
  }

  #call(body: CommandBody): Promise<HostReply> {
    if (this.#exited) return Promise.reject(new Error(`runner ${this.id} has exited`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => reject(this.#death(body.op, code, signal));
      this.#child.once('exit', onExit);
      this.#pending.set(id, (reply) => {
        this.#child.off('exit', onExit);
        resolve(reply);
      });
      this.#child.send({ ...body, id } as HostCommand);
    });
  }

  /** One invocation with a fresh batch of `events` records and `timeoutMs` left before Lambda's timeout. */
  async run(events: number, timeoutMs = 900_000): Promise<HostRun> {
    const reply = await this.#call({ op: 'run', events, timeoutMs });
    if (reply.type !== 'run') throw new Error(`runner ${this.id}: expected a run result, got '${reply.type}'`);
    return reply.run;
  }

  /** A V8 sampling CPU profile over `runs` invocations of `events` records. */
  async profile(events: number, runs: number, intervalUs: number): Promise<unknown> {
    const reply = await this.#call({ op: 'profile', events, runs, intervalUs });
    if (reply.type !== 'profile') throw new Error(`runner ${this.id}: expected a profile, got '${reply.type}'`);
    return reply.profile;
  }

  async memory(): Promise<HostMemory> {
    const reply = await this.#call({ op: 'memory' });
    if (reply.type !== 'memory') throw new Error(`runner ${this.id}: expected memory figures, got '${reply.type}'`);
    return reply.memory;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Bytes the runner has written to stdout and stderr so far. */
  get outputBytes(): number {
    return this.#output;
  }

  async close(): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.disconnect();
    await exited;
  }
}
