export { EndpointDelivery } from './delivery';
export {
  authHeaders,
  CONTENT_TYPE,
  type Credential,
  Endpoint,
  HTTP_4XX,
  type PreparedRequest,
  type RequestObserver,
  USER_AGENT,
} from './endpoint';
export type { DeliveryCallback, DeliveryResult, RequestSource, RetryOptions } from './types';
