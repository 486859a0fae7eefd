import type { DeliveryResult } from './delivery';
import type { Credential } from './endpoint';
import type { ValidEvent } from './event';
import type { Subscriber } from './subscription/subscriber';

export interface FanoutContext {
  signal: AbortSignal;
  deadlineAt: number;
  credentials?: ReadonlyMap<string, Credential>;
  /** Values of the endpoints file's secret references (see createSecretSource). */
  secrets?: ReadonlyMap<string, string>;
  /** Reads an endpoint's credential again, bypassing the cache (after a 401 or 403). */
  refreshCredential?: (endpoint: string) => Promise<Credential | undefined>;
  /** Reads an endpoint's secret references again into `secrets`, bypassing the cache (after a 401 or 403). */
  refreshSecrets?: (endpoint: string) => Promise<void>;
}

export interface FanoutResult {
  /** One result per endpoint that was asked, in endpoint order. */
  results: DeliveryResult[];
  /** Endpoints the event is routed to that the ledger says already have it. */
  skipped: string[];
  /** Endpoints whose filter the event matches; an endpoint not listed neither got it nor holds back its ack. */
  routed: string[];
}

/** Sends one event to every endpoint it is routed to that does not have it yet, all at once; never throws. */
export async function fanout(
  event: ValidEvent,
  endpoints: readonly Subscriber[],
  already: ReadonlySet<string> | undefined,
  context: FanoutContext,
): Promise<FanoutResult> {
  const skipped: string[] = [];
  const routed: string[] = [];
  const pending: Promise<DeliveryResult>[] = [];
  for (const endpoint of endpoints) {
    if (!endpoint.routes(event)) continue;
    routed.push(endpoint.name);
    if (already?.has(endpoint.name)) {
      skipped.push(endpoint.name);
      continue;
    }
    pending.push(endpoint.deliver(event, context, context.credentials?.get(endpoint.name)));
  }
  return { results: await Promise.all(pending), skipped, routed };
}
