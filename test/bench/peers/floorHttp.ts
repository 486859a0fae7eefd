import http from 'node:http';
import https from 'node:https';
import { floorHeaders, sendAll } from './floor';
import type { Runner } from './runner';

/**
 * (c) Floor, node:http: one keep-alive Agent per endpoint with `connections` sockets (https.Agent for https URLs),
 * as lib/delivery/endpoint.ts uses, with the request options resolved once.
 */
export function floorHttpRunner(urls: string[], connections: number): Runner {
  const agentOptions = {
    keepAlive: true,
    maxSockets: connections,
    maxFreeSockets: connections,
    scheduling: 'lifo' as const,
  };
  const targets = urls.map((u) => {
    const url = new URL(u);
    const secure = url.protocol === 'https:';
    const options: http.RequestOptions = {
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      agent: secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions),
    };
    return { options, request: secure ? https.request : http.request };
  });
  return {
    id: 'floor-http',
    label: `floor: node:http Agent (${connections} conn.)`,
    handle: (event) =>
      sendAll(
        event,
        urls.length,
        (i, body, record) =>
          new Promise<number>((resolve, reject) => {
            const target = targets[i]!;
            const req = target.request({ ...target.options, headers: floorHeaders(record, body.length) });
            req.on('response', (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
              res.on('error', reject);
            });
            req.on('error', reject);
            req.end(body);
          }),
      ),
    async close() {
      for (const target of targets) (target.options.agent as http.Agent).destroy();
    },
  };
}
