/**
 * Child process: N loopback HTTP endpoints for the benchmark, each answering 202 after its configured delay
 * (-1 = never answers). Runs apart from the code under test so that serving requests does not steal its CPU.
 * Controlled over the IPC channel by EndpointFleet (fleet.ts).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createSqsServer } from 'local-aws-sqs';
import { QUEUE_NAME } from './events';
import { NEVER } from './fleet';

export interface EndpointStats {
  /** Requests whose body was fully received. */
  requests: number;
  answered: number;
  openConnections: number;
  peakConnections: number;
  /** Most connections opened since the counters were last zeroed that were open at one moment. */
  peakNewConnections: number;
  /** Most requests received and not yet answered at one moment. */
  peakInFlight: number;
}

export type Command =
  | { id: number; op: 'delays'; delays: number[] }
  | { id: number; op: 'reset' }
  | { id: number; op: 'zero' }
  | { id: number; op: 'stats' }
  | { id: number; op: 'stop' };

export type Reply =
  | { type: 'ready'; ports: number[]; sqsEndpoint: string }
  | { type: 'reply'; id: number; stats?: EndpointStats[] };

interface Slot {
  server: http.Server | https.Server;
  delayMs: number;
  stats: EndpointStats;
  inFlight: number;
  sockets: Set<Socket>;
  /** Sockets accepted since the last zero or reset. */
  fresh: Set<Socket>;
  hung: Set<http.ServerResponse>;
}

function freshStats(openConnections = 0): EndpointStats {
  return {
    requests: 0,
    answered: 0,
    openConnections,
    peakConnections: openConnections,
    peakNewConnections: 0,
    peakInFlight: 0,
  };
}

/** An endpoint: plain http, or https with the given certificate (the TLS handshake is part of a real endpoint's cost). */
function createSlot(tls?: { cert: Buffer; key: Buffer }): Slot {
  const slot: Slot = {
    server: tls ? https.createServer({ cert: tls.cert, key: tls.key }) : http.createServer(),
    delayMs: 0,
    stats: freshStats(),
    inFlight: 0,
    sockets: new Set(),
    fresh: new Set(),
    hung: new Set(),
  };
  const answer = (res: http.ServerResponse) => {
    slot.inFlight--;
    slot.stats.answered++;
    res.writeHead(202, { 'content-length': '0' });
    res.end();
  };
  // For https, 'secureConnection' would come later; 'connection' counts TCP connections either way.
  slot.server.on('connection', (socket: Socket) => {
    slot.sockets.add(socket);
    slot.fresh.add(socket);
    slot.stats.openConnections = slot.sockets.size;
    slot.stats.peakConnections = Math.max(slot.stats.peakConnections, slot.sockets.size);
    slot.stats.peakNewConnections = Math.max(slot.stats.peakNewConnections, slot.fresh.size);
    socket.on('close', () => {
      slot.sockets.delete(socket);
      slot.fresh.delete(socket);
      slot.stats.openConnections = slot.sockets.size;
    });
  });
  slot.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on('end', () => {
      slot.stats.requests++;
      slot.inFlight++;
      slot.stats.peakInFlight = Math.max(slot.stats.peakInFlight, slot.inFlight);
      const delay = slot.delayMs;
      if (delay === NEVER) {
        slot.hung.add(res);
        res.on('close', () => {
          if (slot.hung.delete(res)) slot.inFlight--;
        });
      } else if (delay === 0) {
        answer(res);
      } else {
        setTimeout(() => (res.destroyed ? slot.inFlight-- : answer(res)), delay);
      }
    });
  });
  // Keep-alive connections stay up for the whole bench, as a real endpoint's load balancer would keep them (≥ 60 s).
  slot.server.keepAliveTimeout = 120_000;
  slot.server.headersTimeout = 121_000;
  slot.server.requestTimeout = 0;
  slot.server.maxHeadersCount = 100;
  return slot;
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? '3');
  // argv[3], argv[4]: certificate and key files: then `count` https endpoints follow the `count` http ones.
  const [certFile, keyFile] = [process.argv[3], process.argv[4]];
  const tls = certFile && keyFile ? { cert: readFileSync(certFile), key: readFileSync(keyFile) } : undefined;
  const slots = [
    ...Array.from({ length: count }, () => createSlot()),
    ...(tls ? Array.from({ length: count }, () => createSlot(tls)) : []),
  ];
  const ports = await Promise.all(
    slots.map(
      (slot) =>
        new Promise<number>((resolve, reject) => {
          slot.server.once('error', reject);
          // A deep accept backlog: the naive peer opens thousands of connections at once.
          slot.server.listen({ port: 0, host: '127.0.0.1', backlog: 65_535 }, () => {
            const address = slot.server.address();
            if (address && typeof address === 'object') resolve(address.port);
            else reject(new Error('endpoint server: no port'));
          });
        }),
    ),
  );
  // The handler's SQS calls (visibility backoff of failed records) go here, never to AWS: the source queue exists.
  const sqs = await createSqsServer({ port: 0, hostname: '127.0.0.1', queues: [{ QueueName: QUEUE_NAME }] });
  const sqsEndpoint = `http://127.0.0.1:${(sqs.address() as AddressInfo).port}`;
  const send = (reply: Reply) => process.send?.(reply);
  process.on('message', (command: Command) => {
    switch (command.op) {
      case 'delays':
        command.delays.forEach((delay, i) => {
          const slot = slots[i];
          if (slot) slot.delayMs = delay;
        });
        send({ type: 'reply', id: command.id });
        break;
      case 'reset':
        // Every connection is closed: each measured block starts from cold pools, then warms them up itself.
        for (const slot of slots) {
          for (const res of slot.hung) res.destroy();
          slot.hung.clear();
          slot.server.closeAllConnections();
          for (const socket of slot.sockets) socket.destroy();
          slot.inFlight = 0;
          slot.fresh.clear();
          slot.stats = freshStats();
        }
        send({ type: 'reply', id: command.id });
        break;
      case 'zero':
        // Counters only: the connections stay up (warm pools stay warm), and the peak starts from what is open now.
        for (const slot of slots) {
          slot.stats = freshStats(slot.sockets.size);
          slot.fresh.clear();
        }
        send({ type: 'reply', id: command.id });
        break;
      case 'stats':
        send({ type: 'reply', id: command.id, stats: slots.map((s) => ({ ...s.stats })) });
        break;
      case 'stop':
        for (const slot of slots) {
          slot.server.closeAllConnections();
          for (const socket of slot.sockets) socket.destroy();
          slot.server.close();
        }
        sqs.closeAllConnections();
        sqs.close();
        send({ type: 'reply', id: command.id });
        process.disconnect?.();
        break;
    }
  });
  // The parent died: do not linger.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', ports, sqsEndpoint });
}

if (process.send) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
