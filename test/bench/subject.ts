/** The runners' environments and host specs: the handler as deployed, the peers and the floors, all on loopback. */

import { loadConfig } from '../../lib/config/config';
import type { Bundles, HostKind } from './bundles';
import type { HostSpec } from './hostProcess';

const NAMES = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];

/** The handler's default ENDPOINT_MAX_CONNECTIONS, read from lib/config/config.ts: the floors get a pool of the same size. */
export const DEFAULT_CONNECTIONS = loadConfig({ ENDPOINTS: 'a=http://127.0.0.1/' }).endpointMaxConnections;

/** Logs, metrics and traces off: their output would be measured instead of the handler. */
export const QUIET_ENV = {
  POWERTOOLS_SERVICE_NAME: 'ingest-fanout',
  POWERTOOLS_METRICS_NAMESPACE: 'IngestFanout',
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  POWERTOOLS_METRICS_DISABLED: 'true',
  POWERTOOLS_TRACE_ENABLED: 'false',
  POWERTOOLS_DEV: 'false',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  // As serverless.yml deploys the function (and every runner alike).
  NODE_OPTIONS: '--enable-source-maps',
} as const;

/** As deployed: INFO logs and EMF metrics on (tracing stays off: there is no X-Ray daemon here). */
export const LOGS_ON_ENV = { POWERTOOLS_LOG_LEVEL: 'INFO', POWERTOOLS_METRICS_DISABLED: 'false' } as const;

export const LABELS: Record<HostKind, string> = {
  handler: 'ingest-fanout',
  naive: 'naive fetch',
  powertools: 'Powertools BatchProcessor',
  'floor-undici': `floor: undici Pool (${DEFAULT_CONNECTIONS} conn.)`,
  'floor-http': `floor: node:http Agent (${DEFAULT_CONNECTIONS} conn.)`,
};

export function endpointsVariable(urls: string[]): string {
  return urls.map((url, i) => `${NAMES[i] ?? `endpoint-${i}`}=${url}`).join(',');
}

/** Where the runners' requests go: all loopback. */
export interface Targets {
  urls: string[];
  sqsEndpoint: string;
  /** The https endpoints' certificate, for the runners to trust (NODE_EXTRA_CA_CERTS). */
  caFile?: string;
}

/** The handler's environment for these targets, every other variable at its default unless `extra` sets it. */
export function subjectEnv(targets: Targets, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...QUIET_ENV,
    ENDPOINTS: endpointsVariable(targets.urls),
    // Failed records get a visibility backoff: those calls go to the fleet's local SQS, never to AWS.
    AWS_ENDPOINT_URL_SQS: targets.sqsEndpoint,
    // No ledger is configured, so nothing calls DynamoDB; if something did, it would get a refused connection.
    AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:9',
    ...(targets.caFile ? { NODE_EXTRA_CA_CERTS: targets.caFile } : {}),
    ...extra,
  };
}

/** How to start a runner of this kind against these targets; `extra` adds or overrides variables. */
export function hostSpec(
  kind: HostKind,
  bundles: Bundles,
  targets: Targets,
  extra: Record<string, string> = {},
  label = LABELS[kind],
): HostSpec {
  const env =
    kind === 'handler'
      ? subjectEnv(targets, extra)
      : {
          ...QUIET_ENV,
          BENCH_URLS: targets.urls.join(','),
          BENCH_CONNECTIONS: String(DEFAULT_CONNECTIONS),
          ...(targets.caFile ? { NODE_EXTRA_CA_CERTS: targets.caFile } : {}),
          ...extra,
        };
  const id = Object.keys(extra).length > 0 && kind === 'handler' ? `handler+${Object.keys(extra).join('+')}` : kind;
  return { id, label, bundle: bundles.hosts[kind], env };
}
