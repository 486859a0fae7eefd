/**
 * Published on-demand prices (us-east-1, USD, after the free tiers) used by the cost table, with where they come from.
 * Check the pages before relying on a figure: AWS changes prices, and other regions differ.
 */
export const PRICES = {
  lambdaArmGbSecond: 0.0000133334,
  lambdaRequest: 0.2 / 1e6,
  sqsRequest: 0.4 / 1e6,
  dynamoWriteUnit: 0.625 / 1e6,
  dynamoReadUnit: 0.125 / 1e6,
  logsIngestedGb: 0.5,
  eventBridgeCustomEvent: 1.0 / 1e6,
  eventBridgeApiDestination: 0.2 / 1e6,
  pipesRequest: 0.4 / 1e6,
  snsPublish: 0.5 / 1e6,
  snsHttpDelivery: 0.6 / 1e6,
} as const;

export const PRICE_SOURCES = [
  'Lambda (arm64 $0.0000133334 per GB-second, $0.20 per million requests): https://aws.amazon.com/lambda/pricing/',
  'SQS (standard queue, $0.40 per million requests of up to 64 KB): https://aws.amazon.com/sqs/pricing/',
  'DynamoDB on-demand ($0.625 per million write request units, $0.125 per million read request units): https://aws.amazon.com/dynamodb/pricing/on-demand/',
  'CloudWatch Logs (standard class, $0.50 per GB ingested): https://aws.amazon.com/cloudwatch/pricing/',
  'EventBridge (custom events $1.00 per million, API destinations $0.20 per million invocations, Pipes $0.40 per million requests): https://aws.amazon.com/eventbridge/pricing/',
  'SNS (standard topic: $0.50 per million publishes, $0.60 per million HTTP/S deliveries): https://aws.amazon.com/sns/pricing/',
  'Secondary summaries of the same figures: https://www.factualminds.com/blog/amazon-eventbridge-pricing-events-pipes-schema-archive/, https://www.factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols/, https://airbyte.com/data-engineering-resources/dynamodb-pricing',
];

/** Lambda's own START, END and REPORT lines per invocation, bytes (about; they vary with ids and figures). */
export const PLATFORM_LOG_BYTES = 350;
/** Receives and deletes per message: the event source mapping receives and deletes 10 messages per request. */
export const SQS_REQUESTS_PER_EVENT = 0.2;
