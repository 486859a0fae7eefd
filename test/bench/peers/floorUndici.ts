import { Pool } from 'undici';
import { floorHeaders, sendAll } from './floor';
import type { Runner } from './runner';

/** (c) Floor, undici: one keep-alive Pool per endpoint with `connections` sockets. */
export function floorUndiciRunner(urls: string[], connections: number): Runner {
  const targets = urls.map((u) => new URL(u));
  const pools = targets.map((u) => new Pool(u.origin, { connections, pipelining: 1 }));
  return {
    id: 'floor-undici',
    label: `floor: undici Pool (${connections} conn.)`,
    handle: (event) =>
      sendAll(event, urls.length, async (i, body, record) => {
        const res = await pools[i]!.request({
          path: targets[i]!.pathname,
          method: 'POST',
          headers: floorHeaders(record, body.length),
          body,
        });
        await res.body.dump();
        return res.statusCode;
      }),
    async close() {
      await Promise.all(pools.map((p) => p.destroy()));
    },
  };
}
