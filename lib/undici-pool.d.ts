// undici's Pool module on its own (undici ships no exports map and no types for it): see lib/endpoint.ts.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';

  const PoolClass: typeof Pool;
  export default PoolClass;
}
