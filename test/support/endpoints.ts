import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { onTestFinished } from 'vitest';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  eventId?: string;
}

/** What the server does with one request: answer a status (after a delay), reset the connection, or never answer. */
export type Behaviour =
  | { status: number; delayMs?: number; headers?: Record<string, string>; body?: string }
  | { reset: true }
  | { hang: true };

export type Responder = (request: ReceivedRequest, attempt: number) => Behaviour;

/** A real loopback HTTP endpoint that records what it received and behaves as the test says. */
export class TestEndpoint {
  readonly received: ReceivedRequest[] = [];
  /** Events answered 2xx, by id, with how many times. */
  readonly accepted = new Map<string, number>();
  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();
  readonly #attempts = new Map<string, number>();
  readonly #waiters: Array<() => void> = [];
  #responder: Responder;

  private constructor(responder: Responder) {
    this.#responder = responder;
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.#answer(req, res, Buffer.concat(chunks)));
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(responder: Responder = () => ({ status: 200 })): Promise<TestEndpoint> {
    const endpoint = new TestEndpoint(responder);
    await new Promise<void>((resolve) => endpoint.#server.listen(0, '127.0.0.1', resolve));
    return endpoint;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/events`;
  }

  respond(responder: Responder): void {
    this.#responder = responder;
  }

  /** Forgets everything received and answers 200 again. */
  reset(): void {
    this.received.length = 0;
    this.accepted.clear();
    this.#attempts.clear();
    this.#responder = () => ({ status: 200 });
  }

  /**
   * Resolves once `count` requests have arrived (a condition, not a sleep); rejects after `timeoutMs` saying how many
   * came, rather than leaving the test to hit its own timeout with no clue.
   */
  async waitForRequests(count: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`expected ${count} request(s) within ${timeoutMs} ms, got ${this.received.length}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  #answer(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) {
    let eventId: string | undefined;
    try {
      eventId = (JSON.parse(body.toString('utf8')) as { id?: string }).id;
    } catch {}
    const request: ReceivedRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      body,
      ...(eventId !== undefined ? { eventId } : {}),
    };
    this.received.push(request);
    for (const wake of this.#waiters.splice(0)) wake();
    const key = eventId ?? '';
    const attempt = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, attempt);
    const behaviour = this.#responder(request, attempt);
    if ('reset' in behaviour) {
      req.socket.resetAndDestroy();
      return;
    }
    if ('hang' in behaviour) return;
    const send = () => {
      if (behaviour.status >= 200 && behaviour.status < 300 && eventId !== undefined) {
        this.accepted.set(eventId, (this.accepted.get(eventId) ?? 0) + 1);
      }
      res.writeHead(behaviour.status, behaviour.headers);
      res.end(behaviour.body ?? '');
    };
    if (behaviour.delayMs) setTimeout(send, behaviour.delayMs);
    else send();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * A loopback port nothing listens on. It lies outside the kernel's ephemeral range (32768-60999), so listening on
 * port 0 never hands it out: unlike a port closed after use, no other test worker can take it meanwhile. The suite's
 * AWS_ENDPOINT_URL points there too.
 */
export const CLOSED_PORT = 9;
let refused: Promise<void> | undefined;

/** Resolves once it is checked that connections to CLOSED_PORT are refused (checked once per worker). */
export function closedPortRefuses(): Promise<void> {
  refused ??= new Promise<void>((resolve, reject) => {
    const socket = net.connect(CLOSED_PORT, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      reject(
        new Error(
          `test setup: something listens on 127.0.0.1:${CLOSED_PORT}; the refused-connection tests need it closed`,
        ),
      );
    });
    socket.once('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNREFUSED' ? resolve() : reject(error)));
  });
  return refused;
}

/** A loopback URL whose connections are refused. */
export async function closedPortUrl(): Promise<string> {
  await closedPortRefuses();
  return `http://127.0.0.1:${CLOSED_PORT}/events`;
}

/** A TestEndpoint that closes when the current test finishes. */
export async function testEndpoint(responder?: Responder): Promise<TestEndpoint> {
  const endpoint = await TestEndpoint.start(responder);
  onTestFinished(() => endpoint.close());
  return endpoint;
}

/** Listens on 127.0.0.1 for the current test only (closing every connection after it); returns the events URL. */
export async function listenForTest(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}/events`;
}
