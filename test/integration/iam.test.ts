import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { credentialArns } from '../../infra/stage/index';
import { createCredentialSource, parseCredentialSpec } from '../../lib/credentials/credentials';
import {
  describePermissions,
  FUNCTION_CODE_PERMISSIONS,
  FUNCTION_PLATFORM_PERMISSIONS,
  iamActionFor,
  REDRIVE_PERMISSIONS,
} from '../../lib/iam-actions';
import { redrive } from '../../lib/redrive';
import { createQueueWithDlq, localSqs, sendMessages } from '../support/aws';
import { type AwsCall, LOCAL_ACCOUNT, recordAwsCalls } from '../support/aws-calls';
import { startCredentialStores } from '../support/credential-stores';
import {
  broadGrants,
  checkRole,
  otherPolicySources,
  roleStatements,
  type Statement,
  type Use,
  unknownActions,
} from '../support/iam-check';
import { runStage, type StageRun } from '../support/local-stage';
import {
  credentialsPolicyId,
  type Json,
  mutate,
  packageTemplate,
  ROOT,
  type Template,
  VARIANTS,
} from '../support/package-stack';

// The function's role against the AWS calls the code really makes on the local stack (recorded by an SDK middleware),
// and the redrive tool's printed permissions against its calls.
let template: Template;
let run: StageRun;
let statements: Statement[];
const LANES = ['analytics', 'audit'];
const laneArn = (endpoint: string) => `arn:aws:sqs:us-east-1:${LOCAL_ACCOUNT}:ingest-fanout-dev-lane-${endpoint}`;
const KMS_KEY = VARIANTS.secured.find((arg) => arg.includes('credentialsKmsKeyArn'))!.replace(/^[^=]*=[^=]*=/, '');

beforeAll(async () => {
  // With lanes (a standard stage's default): the run parks, serves, exhausts and re-delays for a paused endpoint.
  template = await packageTemplate(VARIANTS.secured);
  run = await runStage(template);
  statements = roleStatements(template, 'IngestRole', run.stack);
}, 120_000);

/** What the role must allow: the recorded calls, KMS decryption behind the credential reads, and Lambda's own. */
function uses(calls: AwsCall[]): Use[] {
  const region = run.stack.pseudo['AWS::Region'];
  const fromCode = calls.flatMap((call) =>
    call.resources.map((resource) => ({ action: call.action, resource, by: `code: ${call.operation}` })),
  );
  // The stores decrypt with the customer key on our behalf, with this context (SSM and Secrets Manager docs).
  const decrypt = fromCode
    .filter((use) => use.action === 'ssm:GetParameter' || use.action === 'secretsmanager:GetSecretValue')
    .map((use) => {
      const store = use.action.split(':')[0]!;
      const contextKey = store === 'ssm' ? 'PARAMETER_ARN' : 'SecretARN';
      return {
        action: 'kms:Decrypt',
        resource: KMS_KEY,
        context: {
          'kms:ViaService': `${store}.${region}.amazonaws.com`,
          [`kms:EncryptionContext:${contextKey}`]: use.resource,
        },
        by: `${store} decrypting ${use.resource}`,
      };
    });
  const target: Record<string, string[]> = {
    'the source queue': [run.stack.attributes.IngestQueue!.Arn!],
    'each lane queue': LANES.map(
      (endpoint) => `arn:aws:sqs:${region}:${LOCAL_ACCOUNT}:ingest-fanout-dev-lane-${endpoint}`,
    ),
    'the log group': [
      `${run.stack.attributes.IngestLogGroup!.Arn!.replace(/\*$/, '')}log-stream:2026/11/26/[$LATEST]0`,
    ],
    '*': ['*'],
  };
  const platform = FUNCTION_PLATFORM_PERMISSIONS.flatMap((p) =>
    p.actions.flatMap((action) => target[p.resource]!.map((resource) => ({ action, resource, by: p.why }))),
  );
  return [...fromCode, ...decrypt, ...platform];
}

describe('the function role against the calls the code makes', () => {
  it('records every action the code needs in the scenarios', () => {
    const recorded = new Set(run.calls.map((call) => call.action));
    const expected = FUNCTION_CODE_PERMISSIONS.flatMap((p) => p.actions).filter((a) => a !== 'kms:Decrypt');
    expect([...recorded].sort()).toEqual([...new Set(expected)].sort());
    expect(run.calls.filter((call) => call.resources.length === 0)).toEqual([]);
    // Each lane was sent to (parked in, and re-delayed for the paused one) and had its pause tag read.
    const onLanes = run.calls.filter((call) => /:ingest-fanout-dev-lane-/.test(call.resources[0]!));
    expect(new Set(onLanes.map((call) => `${call.operation} ${call.resources[0]!.split(':').at(-1)}`))).toEqual(
      new Set(
        LANES.flatMap((e) => [
          `SendMessageBatch ingest-fanout-dev-lane-${e}`,
          `ListQueueTags ingest-fanout-dev-lane-${e}`,
        ]),
      ),
    );
    // The 401 made the function read the credential again, with the same permission.
    expect(run.calls.filter((call) => call.operation === 'GetParameter').length).toBeGreaterThanOrEqual(2);
  });

  it('names only actions that exist in IAM', async () => {
    const named = [
      ...statements.flatMap((s) => s.actions),
      ...run.calls.map((call) => call.action),
      ...[FUNCTION_CODE_PERMISSIONS, FUNCTION_PLATFORM_PERMISSIONS, REDRIVE_PERMISSIONS]
        .flat()
        .flatMap((p) => p.actions),
    ];
    expect(await unknownActions(named)).toEqual([]);
    // The API operation is not always the action: SendMessageBatch is authorised by sqs:SendMessage.
    expect(await unknownActions([`sqs:SendMessageBatch`, iamActionFor('sqs', 'SendMessageBatch')])).toEqual([
      'sqs:SendMessageBatch',
    ]);
  });

  it('allows each recorded call on the resource it targeted, and grants nothing else', () => {
    expect(checkRole(statements, uses(run.calls))).toEqual({ denied: [], unused: [] });
  });

  it('has no policy source the check does not read, and no wildcard action or resource beyond X-Ray', async () => {
    expect(otherPolicySources(template, 'IngestRole')).toEqual([]);
    expect(await broadGrants(statements)).toEqual([]);
  });

  it('reports managed policies, a boundary, a wildcard action and a wildcard resource on a broken role', async () => {
    const broken = mutate(template, (t) => {
      const role = t.Resources.IngestRole!.Properties!;
      role.ManagedPolicyArns = ['arn:aws:iam::aws:policy/AdministratorAccess'];
      role.PermissionsBoundary = 'arn:aws:iam::123456789012:policy/boundary';
      t.Resources.Extra = {
        Type: 'AWS::IAM::ManagedPolicy',
        Properties: { Roles: [{ Ref: 'IngestRole' }], PolicyDocument: { Version: '2012-10-17', Statement: [] } },
      };
      const statements = (role.Policies as { PolicyDocument: { Statement: Json[] } }[])[0]!.PolicyDocument.Statement;
      statements.push({ Sid: 'Everything', Effect: 'Allow', Action: 'sqs:*', Resource: '*' });
      statements.push({
        Sid: 'AnyTable',
        Effect: 'Allow',
        Action: 'dynamodb:BatchGetItem',
        Resource: 'arn:aws:dynamodb:*',
      });
    });
    expect(otherPolicySources(broken, 'IngestRole')).toEqual([
      'IngestRole.ManagedPolicyArns: ["arn:aws:iam::aws:policy/AdministratorAccess"]',
      'IngestRole.PermissionsBoundary: "arn:aws:iam::123456789012:policy/boundary"',
      'Extra: AWS::IAM::ManagedPolicy attached to IngestRole',
    ]);
    const grants = roleStatements(broken, 'IngestRole', run.stack);
    expect(await broadGrants(grants)).toEqual([
      'Everything: action sqs:* has a wildcard',
      'Everything: resource * is broader than the resources the code uses',
      'AnyTable: resource arn:aws:dynamodb:* is broader than the resources the code uses',
    ]);
    // The same grants pass the used/unused comparison: sqs:* on * is "used" by every SQS call.
    expect(checkRole(grants, uses(run.calls)).unused).not.toContain('Everything: sqs:* on * is granted but never used');
  });

  it('reports a missing action, an unused grant, a secret without its suffix and a wrong KMS context', () => {
    const policyOf = (t: Template, id: string) =>
      (t.Resources[id]!.Properties!.PolicyDocument ??
        (t.Resources[id]!.Properties!.Policies as Json[])[0]!.PolicyDocument) as {
        Statement: Json[];
      };
    const broken = mutate(template, (t) => {
      const role = policyOf(t, 'IngestRole').Statement;
      role.find((s) => s.Sid === 'QuarantineToDeadLetterQueue')!.Action = ['sqs:SendMessageBatch'];
      (role.find((s) => s.Sid === 'ConsumeSourceQueue')!.Action as string[]).push('sqs:PurgeQueue');
      const lanes = policyOf(t, 'IngestLanesPolicy').Statement[0]!;
      lanes.Action = (lanes.Action as string[]).filter((action) => action !== 'sqs:ListQueueTags');
      const credentials = policyOf(t, credentialsPolicyId(t)).Statement;
      credentials.find((s) => s.Sid === 'ReadEndpointCredentialSecrets')!.Resource = [
        'arn:aws:secretsmanager:us-east-1:123456789012:secret:ingest-fanout/dev/audit-key',
      ];
      const decrypt = credentials.find((s) => s.Sid === 'DecryptEndpointCredentialParameters')!;
      (decrypt.Condition as Record<string, Json>).StringLike = {
        'kms:EncryptionContext:PARAMETER_ARN': 'arn:aws:ssm:us-east-1:123456789012:parameter/other',
      };
    });
    const { denied, unused } = checkRole(roleStatements(broken, 'IngestRole', run.stack), uses(run.calls));
    const dlq = run.stack.attributes.IngestDeadLetterQueue!.Arn!;
    expect(denied.sort()).toEqual([
      `kms:Decrypt on ${KMS_KEY} (ssm decrypting arn:aws:ssm:us-east-1:123456789012:parameter/ingest-fanout/dev/analytics-token) is denied`,
      'secretsmanager:GetSecretValue on arn:aws:secretsmanager:us-east-1:123456789012:secret:ingest-fanout/dev/audit-key-AbC123 (code: GetSecretValue) is denied',
      ...LANES.map((e) => `sqs:ListQueueTags on ${laneArn(e)} (code: ListQueueTags) is denied`),
      `sqs:SendMessage on ${dlq} (code: SendMessageBatch) is denied`,
    ]);
    expect(unused).toEqual([
      `ConsumeSourceQueue: sqs:PurgeQueue on ${run.stack.attributes.IngestQueue!.Arn} is granted but never used`,
      `QuarantineToDeadLetterQueue: sqs:SendMessageBatch on ${dlq} is granted but never used`,
      'ReadEndpointCredentialSecrets: secretsmanager:GetSecretValue on arn:aws:secretsmanager:us-east-1:123456789012:secret:ingest-fanout/dev/audit-key is granted but never used',
      `DecryptEndpointCredentialParameters: kms:Decrypt on ${KMS_KEY} is granted but never used`,
    ]);
  });

  it('allows a secret named by its ARN without the suffix, as the store resolves it', async () => {
    const stores = await startCredentialStores({}, { 'ingest/audit': 'hmac-secret' });
    const partial = stores.secretArn('ingest/audit').slice(0, -7);
    const recorder = recordAwsCalls();
    try {
      const spec = parseCredentialSpec(`audit=hmac:secretsmanager:${partial}`, ['audit']);
      const clientConfig = { endpoint: stores.url, region: 'us-east-1', maxAttempts: 1 };
      const { SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
      await createCredentialSource(spec, { secretsClient: new SecretsManagerClient(clientConfig) })();
    } finally {
      recorder.stop();
      await stores.close();
    }
    const resources = credentialArns({ store: 'secretsmanager', name: partial }).map(String);
    const policy: Statement[] = [
      { sid: 'secret', actions: ['secretsmanager:GetSecretValue'], resources, condition: {} },
    ];
    const calls = recorder.calls.map((c) => ({ action: c.action, resource: c.resources[0]!, by: 'code' }));
    expect(calls).toEqual([
      { action: 'secretsmanager:GetSecretValue', resource: stores.secretArn('ingest/audit'), by: 'code' },
    ]);
    expect(checkRole(policy, calls)).toEqual({ denied: [], unused: [] });
    // Used verbatim, as before the fix, the partial ARN matches no secret.
    expect(checkRole([{ ...policy[0]!, resources: [partial] }], calls).denied).toHaveLength(1);
  });
});

describe('npm run redrive: its printed permissions against its calls', () => {
  it('calls only the actions `--help` lists, on the queues it names, by both methods', async () => {
    const sqs = localSqs();
    // A move task needs a queue that is some queue's DLQ.
    const { queue: destination, dlq } = await createQueueWithDlq(sqs, 'iam-redrive');
    const recorder = recordAwsCalls();
    try {
      await sendMessages(sqs, dlq.url, [{ body: 'a' }, { body: 'b' }]);
      // A long poll before concluding the DLQ is empty: local SQS's short poll can answer empty under load.
      const moving = await redrive(sqs, { from: dlq.url, to: destination.url, method: 'loop', emptyWaitS: 1 });
      expect(moving).toMatchObject({ moved: 2, failed: 0 });
      // Without --to, a message with no recorded origin fails and is left, visible again at once.
      await sendMessages(sqs, dlq.url, [{ body: 'no origin' }]);
      const failing = await redrive(sqs, { from: dlq.url, method: 'loop', emptyWaitS: 1 });
      expect(failing).toMatchObject({ moved: 0, failed: 1 });
      await sendMessages(sqs, dlq.url, [{ body: 'c' }]);
      await redrive(sqs, { from: dlq.url, to: destination.url, method: 'move-task', pollIntervalMs: 50 });
    } finally {
      recorder.stop();
    }
    const redriveCalls = recorder.calls.filter(
      (call) => call.operation !== 'SendMessageBatch' || call.resources[0] !== dlq.arn,
    );
    const listedOn = (resource: string) =>
      REDRIVE_PERMISSIONS.filter((p) => p.resource === resource).flatMap((p) => p.actions);
    const calledOn = (arn: string) =>
      new Set(redriveCalls.filter((call) => call.resources.includes(arn)).map((call) => call.action));
    expect(redriveCalls.every((call) => [dlq.arn, destination.arn].includes(call.resources[0]!))).toBe(true);
    // Everything listed is called, but the cancel (only on Ctrl-C during a move task).
    expect([...calledOn(dlq.arn)].sort()).toEqual(
      listedOn('--from queue')
        .filter((a) => !a.includes('Cancel'))
        .sort(),
    );
    expect([...calledOn(destination.arn)].sort()).toEqual(listedOn('destination queues').sort());

    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'infra/cli/redrive.ts', '--help'],
      {
        cwd: ROOT,
      },
    );
    expect(stdout).toContain(`Required permissions (IAM):\n${describePermissions(REDRIVE_PERMISSIONS)}`);
  });
});
