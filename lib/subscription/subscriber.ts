import type { Credential, DeliveryCallback, DeliveryResult, EndpointDelivery, RequestSource } from '../delivery';
import type { ValidEvent } from '../event';
import { RequestShaper, type ShapeContext } from './request';
import { compileFilter, type Router } from './routing';
import type { EndpointConfig } from './schema';

export interface DeliverContext extends ShapeContext {
  deadlineAt: number;
}

/** One endpoint as a subscription: which events it takes (its filter), how they are shaped, and its delivery lane. */
export class Subscriber {
  readonly name: string;
  readonly routes: (event: ValidEvent) => boolean;
  readonly #shaper: RequestShaper;
  readonly #delivery: EndpointDelivery;

  constructor(
    endpoint: EndpointConfig,
    delivery: EndpointDelivery,
    options: { timeoutMs: number; now?: () => number },
  ) {
    this.name = endpoint.name;
    const router: Router = compileFilter(endpoint.filter);
    this.routes = (event) => router(event.attributes);
    this.#shaper = new RequestShaper(endpoint, options);
    this.#delivery = delivery;
  }

  /** Never rejects. `credential` is the endpoint's ENDPOINT_CREDENTIALS credential, if any. */
  deliver(event: ValidEvent, context: DeliverContext, credential?: Credential): Promise<DeliveryResult> {
    return this.#delivery.deliver(this.#shaper.source(event, context, credential), context.signal, context.deadlineAt);
  }

  /** Nothing of its own to add to a request: fan-out may share one plainSource(event) among such endpoints. */
  get plain(): boolean {
    return this.#shaper.plain;
  }

  /** The request source of one event to this endpoint. */
  source(event: ValidEvent, context: DeliverContext, credential?: Credential): RequestSource {
    return this.#shaper.source(event, context, credential);
  }

  /** deliver() with the source built and a callback, called once: fan-out's path, one promise per event. */
  submit(source: RequestSource, context: DeliverContext, done: DeliveryCallback): void {
    this.#delivery.submit(source, context.signal, context.deadlineAt, done);
  }

  close(): void {
    this.#delivery.close();
  }
}
