// A proxy between a child process and local SQS, to hold it at an exact request (local SQS cannot be paused).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request of the AWS JSON protocol: its action (X-Amz-Target, e.g. AmazonSQS.SendMessageBatch) and body. */
export interface ProxiedRequest {
  target: string;
  body: Record<string, unknown>;
}

export interface SqsProxyHooks {
  /** Before forwarding: may wait; false holds the request for good (never forwarded nor answered). */
  pass?: (request: ProxiedRequest) => boolean | Promise<boolean>;
  /** After local SQS answered a forwarded request. */
  answered?: (request: ProxiedRequest) => void;
}

/** A loopback HTTP proxy in front of local SQS; `url` replaces local SQS's origin in the queue URLs given to a CLI. */
export async function sqsProxy(
  upstream: string,
  hooks: SqsProxyHooks,
): Promise<{ url: string; via: (queueUrl: string) => string; close: () => Promise<void> }> {
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const proxied = {
      target: String(request.headers['x-amz-target'] ?? ''),
      body: JSON.parse(raw.toString() || '{}') as Record<string, unknown>,
    };
    if (hooks.pass && !(await hooks.pass(proxied))) return;
    const headers = Object.fromEntries(
      Object.entries(request.headers).filter(
        (entry): entry is [string, string] =>
          typeof entry[1] === 'string' && !['host', 'connection', 'content-length'].includes(entry[0]),
      ),
    );
    const answer = await fetch(`${upstream}${request.url}`, { method: request.method ?? 'POST', headers, body: raw });
    const answerBody = Buffer.from(await answer.arrayBuffer());
    hooks.answered?.(proxied);
    response.writeHead(answer.status, Object.fromEntries(answer.headers));
    response.end(answerBody);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    via: (queueUrl) => `${url}${new URL(queueUrl).pathname}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
