// The IAM actions behind every AWS call the code makes: one list for the function's role (infra/iam.yml and the
// policy infra/stage.js generates), `npm run redrive -- --help`, and the test that checks both against real calls.

/** The IAM action that authorises an API operation, `service:Operation` → `service:Action`. */
const AUTHORISED_BY: Readonly<Record<string, string>> = {
  // Batch operations are authorised by their single-message action (SQS and DynamoDB docs).
  'sqs:SendMessageBatch': 'sqs:SendMessage',
  'sqs:DeleteMessageBatch': 'sqs:DeleteMessage',
  'sqs:ChangeMessageVisibilityBatch': 'sqs:ChangeMessageVisibility',
};

/** The IAM action for one API call, e.g. ('sqs', 'SendMessageBatch') → 'sqs:SendMessage'. */
export function iamActionFor(service: string, operation: string): string {
  const call = `${service}:${operation}`;
  return AUTHORISED_BY[call] ?? call;
}

/** A permission: actions on one resource, and why they are needed. */
export interface Permission {
  actions: readonly string[];
  resource: string;
  why: string;
}

/** What the function's own code calls (lib/settle/quarantine.ts, backoff.ts, ledger.ts, credentials.ts, lib/lanes/). */
export const FUNCTION_CODE_PERMISSIONS: readonly Permission[] = [
  { actions: ['sqs:SendMessage'], resource: 'the DLQ', why: 'quarantine (SendMessageBatch)' },
  {
    actions: ['sqs:ChangeMessageVisibility'],
    resource: 'the source queue',
    why: 'backoff (ChangeMessageVisibilityBatch)',
  },
  {
    actions: ['dynamodb:BatchGetItem', 'dynamodb:BatchWriteItem'],
    resource: 'the ledger table',
    why: 'delivery ledger',
  },
  {
    actions: ['sqs:SendMessage', 'sqs:ListQueueTags'],
    resource: 'each lane queue',
    why: 'parking and re-delaying (SendMessageBatch); the pause tag (lib/lanes/)',
  },
  { actions: ['ssm:GetParameter'], resource: 'each SSM credential', why: 'endpoint credentials' },
  { actions: ['secretsmanager:GetSecretValue'], resource: 'each secret credential', why: 'endpoint credentials' },
  { actions: ['kms:Decrypt'], resource: 'the credentials key', why: 'customer-managed key, via SSM/Secrets Manager' },
];

/** What Lambda itself does with the function's role: no code of ours calls these (AWS Lambda docs). */
export const FUNCTION_PLATFORM_PERMISSIONS: readonly Permission[] = [
  {
    actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'],
    resource: 'the source queue',
    why: 'the SQS event source mapping',
  },
  {
    actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'],
    resource: 'each lane queue',
    why: "the lanes' event source mappings",
  },
  { actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resource: 'the log group', why: 'function logs' },
  { actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'], resource: '*', why: 'active tracing' },
];

/** What `npm run redrive` calls, by method (lib/redrive/). */
export const REDRIVE_PERMISSIONS: readonly Permission[] = [
  {
    actions: ['sqs:GetQueueAttributes', 'sqs:ReceiveMessage', 'sqs:DeleteMessage'],
    resource: '--from queue',
    why: 'both methods (the move task receives and deletes with your permissions too)',
  },
  {
    actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes'],
    resource: 'destination queues',
    why: 'SendMessage: both methods; GetQueueAttributes: --to, for its ARN',
  },
  {
    actions: ['sqs:ChangeMessageVisibility'],
    resource: '--from queue',
    why: 'loop: keeps the messages it leaves (arrived later, came back, failed) hidden during the run, then visible',
  },
  {
    actions: ['sqs:StartMessageMoveTask', 'sqs:ListMessageMoveTasks', 'sqs:CancelMessageMoveTask'],
    resource: '--from queue',
    why: 'move-task method (Ctrl-C cancels the task)',
  },
];

/** What `npm run endpoint` calls (infra/cli/lane-pause.ts); the lambda actions only on a deployed stage. */
export const ENDPOINT_CLI_PERMISSIONS: readonly Permission[] = [
  { actions: ['sqs:ListQueues'], resource: '*', why: "finding the stage's lanes (not scoped to a queue)" },
  {
    actions: ['sqs:TagQueue', 'sqs:UntagQueue', 'sqs:ListQueueTags', 'sqs:GetQueueAttributes'],
    resource: "the stage's lane queues",
    why: 'pause / resume (the tag), status (the tag and counts), the lane ARN',
  },
  { actions: ['lambda:ListEventSourceMappings'], resource: '*', why: "finding the lane's mapping (not scoped)" },
  {
    actions: ['lambda:UpdateEventSourceMapping'],
    resource: "the function's lane mappings",
    why: 'disabling it on pause, enabling it on resume',
  },
];

/** The "required permissions" block of `npm run redrive -- --help`. */
export function describePermissions(permissions: readonly Permission[]): string {
  return permissions.map((p) => `  ${p.actions.join(', ')}\n      on ${p.resource}: ${p.why}`).join('\n');
}
