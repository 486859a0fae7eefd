import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** The SQS action of a request: the JSON protocol's X-Amz-Target, or the query protocol's Action parameter. */
function actionOf(req: http.IncomingMessage, body: Buffer): string {
  const target = req.headers['x-amz-target'];
  if (typeof target === 'string') return target.slice(target.lastIndexOf('.') + 1);
  return new URLSearchParams(body.toString('utf8')).get('Action') ?? '';
}

/**
 * A loopback proxy in front of the local SQS server that can make chosen actions fail with 503 ServiceUnavailable,
 * e.g. SendMessageBatch to take the quarantine queue down while receives and deletes keep working.
 */
export class SqsFaultProxy {
  readonly #server: http.Server;
  readonly #target: URL;
  readonly #sockets = new Set<Socket>();
  #failing = new Set<string>();
  readonly stats = { forwarded: 0, refused: 0 };

  private constructor(target: string) {
    this.#target = new URL(target);
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.#handle(req, res, Buffer.concat(chunks)));
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(target: string): Promise<SqsFaultProxy> {
    const proxy = new SqsFaultProxy(target);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** Base URL to use instead of the server's. */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** From now on, these actions (e.g. 'SendMessageBatch') are answered 503 until restore(). */
  fail(actions: readonly string[]): void {
    this.#failing = new Set(actions);
  }

  restore(): void {
    this.#failing = new Set();
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    if (this.#failing.has(actionOf(req, body))) {
      this.stats.refused++;
      res
        .writeHead(503, {
          'content-type': 'application/x-amz-json-1.0',
          'x-amzn-query-error': 'ServiceUnavailable;Receiver',
        })
        .end(JSON.stringify({ __type: 'com.amazonaws.sqs#ServiceUnavailable', message: 'injected outage' }));
      return;
    }
    this.stats.forwarded++;
    const upstream = http.request(
      {
        host: this.#target.hostname,
        port: this.#target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: this.#target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.end(body);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
  }
}
