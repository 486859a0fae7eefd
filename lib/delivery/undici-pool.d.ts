// undici's Pool module on its own (undici ships no exports map and no types for it): see lib/delivery/endpoint.ts.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';

  const PoolClass: typeof Pool;
  export default PoolClass;
}

// undici's connector factory on its own: the connect function it builds returns the socket it opens (not in its types).
declare module 'undici/lib/core/connect.js' {
  import type { Socket } from 'node:net';
  import type { buildConnector as BuildConnector } from 'undici';

  function buildConnector(
    options?: BuildConnector.BuildOptions,
  ): (options: BuildConnector.Options, callback: BuildConnector.Callback) => Socket;
  namespace buildConnector {
    type connector = BuildConnector.connector;
  }
  export default buildConnector;
}
