import { type ChildProcess, fork } from 'node:child_process';
import type { Command, EndpointStats, Reply } from './endpointServer';
import { CHILD_NODE } from './paths';

/** Delay value for an endpoint that accepts the request and never answers. */
export const NEVER = -1;

type CommandBody = Command extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

/**
 * The benchmark's downstream endpoints, served by a separate Node process (endpointServer.ts). Their URLs stay fixed
 * for the whole run; each scenario only changes how long each endpoint takes to answer.
 */
export class EndpointFleet {
  readonly urls: string[];
  /** The same endpoints over https (certificate from tls.ts), when the fleet was started with one. */
  readonly tlsUrls: string[];
  /** local-aws-sqs in the same child process: point AWS_ENDPOINT_URL_SQS here. */
  readonly sqsEndpoint: string;
  readonly #child: ChildProcess;
  #nextId = 1;
  readonly #pending = new Map<number, (reply: Extract<Reply, { type: 'reply' }>) => void>();

  private constructor(child: ChildProcess, ports: number[], count: number, sqsEndpoint: string) {
    this.#child = child;
    this.sqsEndpoint = sqsEndpoint;
    this.urls = ports.slice(0, count).map((port) => `http://127.0.0.1:${port}/events`);
    this.tlsUrls = ports.slice(count).map((port) => `https://127.0.0.1:${port}/events`);
    child.on('message', (reply: Reply) => {
      if (reply.type !== 'reply') return;
      this.#pending.get(reply.id)?.(reply);
      this.#pending.delete(reply.id);
    });
  }

  /**
   * Starts `count` endpoints in a child process running `serverBundle` (endpointServer.ts built by bundles.ts), and
   * `count` more over https when a certificate is given.
   */
  static async start(
    count: number,
    serverBundle: string,
    tls?: { certFile: string; keyFile: string },
  ): Promise<EndpointFleet> {
    const child = fork(serverBundle, [String(count), ...(tls ? [tls.certFile, tls.keyFile] : [])], {
      execPath: CHILD_NODE,
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = await new Promise<Extract<Reply, { type: 'ready' }>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('endpoint server did not start within 30 s')), 30_000);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`endpoint server exited with code ${code} before it was ready`)));
      child.on('message', (reply: Reply) => {
        if (reply.type === 'ready') {
          clearTimeout(timer);
          resolve(reply);
        }
      });
    });
    child.removeAllListeners('exit');
    return new EndpointFleet(child, ready.ports, count, ready.sqsEndpoint);
  }

  #call(body: CommandBody): Promise<Extract<Reply, { type: 'reply' }>> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#child.send({ ...body, id } as Command);
    });
  }

  /** Sets each endpoint's answer delay in ms (NEVER: no answer); the https twin of endpoint i gets delays[i] too. */
  async delays(delays: number[]): Promise<void> {
    await this.#call({ op: 'delays', delays: this.tlsUrls.length > 0 ? [...delays, ...delays] : delays });
  }

  /** The same endpoints, addressed over https; `caFile` is the certificate the fleet was started with. */
  tlsTargets(caFile: string): { urls: string[]; sqsEndpoint: string; caFile: string } {
    return { urls: this.tlsUrls, sqsEndpoint: this.sqsEndpoint, caFile };
  }

  /** Closes every connection and zeroes the counters. */
  async reset(): Promise<void> {
    await this.#call({ op: 'reset' });
  }

  /** Zeroes the counters and keeps the connections. */
  async zero(): Promise<void> {
    await this.#call({ op: 'zero' });
  }

  async stats(): Promise<EndpointStats[]> {
    return (await this.#call({ op: 'stats' })).stats ?? [];
  }

  async stop(): Promise<void> {
    if (!this.#child.connected) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    await this.#call({ op: 'stop' });
    await exited;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }
}
