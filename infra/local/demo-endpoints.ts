import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** error: a 500/502/503 answer. reset: the connection is reset. slow: a 200 after a delay. hang: no answer at all. */
export type FaultKind = 'error' | 'reset' | 'slow' | 'hang';
export const FAULT_KINDS: readonly FaultKind[] = ['error', 'reset', 'slow', 'hang'];

export interface FaultPlan {
  /** Share of requests that get a fault, 0 to 1. */
  rate: number;
  /** The faults to pick from, uniformly; repeat a kind to make it more likely. Default: error, reset, slow. */
  kinds?: readonly FaultKind[];
  /** Delay of a slow answer, [min, max] ms. Default [200, 1200]. */
  slowMs?: readonly [number, number];
  /** Delay added to every answer, [min, max] ms: an endpoint that is slow all the time. Default none. */
  latencyMs?: readonly [number, number];
}

/** A fault plan that cannot be applied; the message says what is accepted. */
export class FaultPlanError extends Error {
  override readonly name = 'FaultPlanError';
}

export function checkFaultPlan(plan: FaultPlan): FaultPlan {
  if (!(plan.rate >= 0 && plan.rate <= 1)) {
    throw new FaultPlanError(`fault rate ${plan.rate} is not from 0 to 1 (0.2 = one request in five)`);
  }
  for (const kind of plan.kinds ?? []) {
    if (!FAULT_KINDS.includes(kind)) throw new FaultPlanError(`unknown fault '${kind}': use ${FAULT_KINDS.join(', ')}`);
  }
  return plan;
}

export interface EndpointStats {
  requests: number;
  /** Requests answered 2xx: the endpoint has the event. */
  accepted: number;
  /** Distinct events accepted. */
  unique: number;
  /** Accepted more than once (accepted − unique). */
  duplicates: number;
  faults: Record<FaultKind, number>;
}

function pick(range: readonly [number, number], random: () => number): number {
  return range[0] + Math.floor(random() * (range[1] - range[0] + 1));
}

/** The CloudEvent id of a delivery: the ce-id header (binary mode), the JSON body, else the Idempotency-Key header. */
function eventIdOf(body: Buffer, headers: http.IncomingHttpHeaders): string {
  const ceId = headers['ce-id'];
  if (typeof ceId === 'string') return decodeURIComponent(ceId);
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null && 'id' in parsed && typeof parsed.id === 'string') {
      return parsed.id;
    }
  } catch {
    // Not JSON: fall back to the header.
  }
  const key = headers['idempotency-key'];
  return typeof key === 'string' ? `key:${key}` : 'unknown';
}

/** One loopback endpoint that accepts CloudEvents, counts them per event id and fails on demand. */
export class DemoEndpoint {
  readonly name: string;
  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();
  readonly #accepted = new Map<string, number>();
  readonly #random: () => number;
  readonly #stats = {
    requests: 0,
    accepted: 0,
    faults: { error: 0, reset: 0, slow: 0, hang: 0 } as Record<FaultKind, number>,
  };
  #plan: FaultPlan;

  private constructor(name: string, plan: FaultPlan, random: () => number) {
    this.name = name;
    this.#plan = checkFaultPlan(plan);
    this.#random = random;
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.#answer(req, res, Buffer.concat(chunks)));
      req.on('error', () => {});
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(name: string, plan: FaultPlan = { rate: 0 }, random = Math.random): Promise<DemoEndpoint> {
    const endpoint = new DemoEndpoint(name, plan, random);
    await new Promise<void>((resolve, reject) => {
      endpoint.#server.once('error', reject);
      endpoint.#server.listen(0, '127.0.0.1', () => resolve());
    });
    return endpoint;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/events`;
  }

  get faults(): FaultPlan {
    return this.#plan;
  }

  /** Changes the faults from the next request on. */
  setFaults(plan: FaultPlan): void {
    this.#plan = checkFaultPlan(plan);
  }

  /** How many times the event was accepted (0 when never). */
  count(eventId: string): number {
    return this.#accepted.get(eventId) ?? 0;
  }

  get stats(): EndpointStats {
    const unique = this.#accepted.size;
    return {
      requests: this.#stats.requests,
      accepted: this.#stats.accepted,
      unique,
      duplicates: this.#stats.accepted - unique,
      faults: { ...this.#stats.faults },
    };
  }

  #fault(): FaultKind | undefined {
    const { rate, kinds = ['error', 'reset', 'slow'] } = this.#plan;
    if (kinds.length === 0 || this.#random() >= rate) return undefined;
    return kinds[Math.floor(this.#random() * kinds.length)];
  }

  #answer(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    this.#stats.requests++;
    const fault = this.#fault();
    if (fault) this.#stats.faults[fault]++;
    if (fault === 'hang') return;
    if (fault === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    const { latencyMs, slowMs = [200, 1200] } = this.#plan;
    const delay = (latencyMs ? pick(latencyMs, this.#random) : 0) + (fault === 'slow' ? pick(slowMs, this.#random) : 0);
    const respond = () => {
      if (fault === 'error') {
        const status = [500, 502, 503][Math.floor(this.#random() * 3)]!;
        res.writeHead(status, { 'content-type': 'text/plain' }).end('injected fault\n');
        return;
      }
      // Counted when answered, even if the caller gave up waiting: the endpoint has processed the event.
      const id = eventIdOf(body, req.headers);
      this.#accepted.set(id, (this.#accepted.get(id) ?? 0) + 1);
      this.#stats.accepted++;
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"accepted":true}\n');
    };
    if (delay > 0) setTimeout(respond, delay);
    else respond();
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
  }
}

export const DEMO_ENDPOINT_NAMES = ['analytics', 'audit', 'search'] as const;

export interface DemoEndpoints {
  list: DemoEndpoint[];
  /** The ENDPOINTS value that points the handler at them. */
  envValue: string;
  /** Sets the same fault plan on every endpoint. */
  setFaults(plan: FaultPlan): void;
  close(): Promise<void>;
}

/** Three demo endpoints (analytics, audit, search) on 127.0.0.1, with the same fault plan. */
export async function startDemoEndpoints(
  plan: FaultPlan = { rate: 0 },
  names: readonly string[] = DEMO_ENDPOINT_NAMES,
): Promise<DemoEndpoints> {
  const list = await Promise.all(names.map((name) => DemoEndpoint.start(name, plan)));
  return {
    list,
    envValue: list.map((endpoint) => `${endpoint.name}=${endpoint.url}`).join(','),
    setFaults: (next) => {
      for (const endpoint of list) endpoint.setFaults(next);
    },
    close: async () => {
      await Promise.all(list.map((endpoint) => endpoint.close()));
    },
  };
}
