import type { DeliveryResult, EndpointDelivery } from './delivery';
import type { Credential } from './endpoint';
import type { ValidEvent } from './event';

export interface FanoutContext {
  signal: AbortSignal;
  deadlineAt: number;
  credentials?: ReadonlyMap<string, Credential>;
  /** Reads an endpoint's credential again, bypassing the cache (after a 401 or 403). */
  refreshCredential?: (endpoint: string) => Promise<Credential | undefined>;
}

export interface FanoutResult {
  /** One result per endpoint that was asked, in endpoint order. */
  results: DeliveryResult[];
  /** Endpoints the ledger says already have the event. */
  skipped: string[];
}

/** Sends one event to every endpoint that does not have it yet, all at once; never throws. */
export async function fanout(
  event: ValidEvent,
  endpoints: readonly EndpointDelivery[],
  already: ReadonlySet<string> | undefined,
  context: FanoutContext,
): Promise<FanoutResult> {
  const skipped: string[] = [];
  const pending: Promise<DeliveryResult>[] = [];
  for (const endpoint of endpoints) {
    if (already?.has(endpoint.name)) {
      skipped.push(endpoint.name);
      continue;
    }
    const credential = context.credentials?.get(endpoint.name);
    const { refreshCredential } = context;
    const refresh = credential && refreshCredential ? () => refreshCredential(endpoint.name) : undefined;
    pending.push(endpoint.deliver(event.body, event.key, context.signal, context.deadlineAt, credential, refresh));
  }
  return { results: await Promise.all(pending), skipped };
}
