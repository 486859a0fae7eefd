// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The IAM policy that lets the function read exactly the endpoint credentials the stage names.

import { createHash } from 'node:crypto';
import type { Resource, Value } from './cfn';
import type { Stage } from './load';

/** Where a credential is stored and its name or ARN there. */
export interface CredentialRef {
  store: Store;
  name: string;
}
type Store = 'ssm' | 'secretsmanager';
const STORES: readonly Store[] = ['ssm', 'secretsmanager'];

/** A full secret ARN ends in '-' and the six characters Secrets Manager appends; a partial ARN stops at the name. */
const FULL_SECRET_ARN = /:secret:.+-[A-Za-z0-9]{6}$/;

/** The IAM resources matching one credential; IAM checks a secret by its full ARN, suffix included. */
export function credentialArns(ref: CredentialRef): Value[] {
  if (ref.store === 'ssm') {
    if (ref.name.startsWith('arn:')) return [ref.name];
    return [
      {
        'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter/${ref.name.replace(/^\//, '')}`,
      },
    ];
  }
  if (ref.name.startsWith('arn:')) {
    // 'name-abcdef' may be a full ARN or a partial one whose name ends that way: allow both readings.
    return FULL_SECRET_ARN.test(ref.name) ? [ref.name, `${ref.name}-??????`] : [`${ref.name}-??????`];
  }
  return [
    { 'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${ref.name}-??????` },
  ];
}

/** The encryption context each store passes to KMS (AWS docs): the parameter's or the secret's ARN. */
const KMS_CONTEXT_KEY: Record<Store, string> = {
  ssm: 'kms:EncryptionContext:PARAMETER_ARN',
  secretsmanager: 'kms:EncryptionContext:SecretARN',
};

export function credentialsPolicy(stage: Pick<Stage, 'credentials' | 'kmsKeyArn'>): Resource {
  const byStore: Record<Store, Value[]> = { ssm: [], secretsmanager: [] };
  for (const ref of stage.credentials) byStore[ref.store].push(...credentialArns(ref));
  const statements: Record<string, unknown>[] = [];
  if (byStore.ssm.length) {
    statements.push({
      Sid: 'ReadEndpointCredentialParameters',
      Effect: 'Allow',
      Action: ['ssm:GetParameter'],
      Resource: byStore.ssm,
    });
  }
  if (byStore.secretsmanager.length) {
    statements.push({
      Sid: 'ReadEndpointCredentialSecrets',
      Effect: 'Allow',
      Action: ['secretsmanager:GetSecretValue'],
      Resource: byStore.secretsmanager,
    });
  }
  // Only for a customer-managed key (the AWS-managed aws/ssm and aws/secretsmanager keys need no grant), and only
  // through each store, for exactly these parameters and secrets.
  if (stage.kmsKeyArn) {
    for (const store of STORES) {
      if (!byStore[store].length) continue;
      statements.push({
        Sid: store === 'ssm' ? 'DecryptEndpointCredentialParameters' : 'DecryptEndpointCredentialSecrets',
        Effect: 'Allow',
        Action: ['kms:Decrypt'],
        Resource: stage.kmsKeyArn,
        Condition: {
          StringEquals: { 'kms:ViaService': { 'Fn::Sub': `${store}.\${AWS::Region}.amazonaws.com` } },
          StringLike: { [KMS_CONTEXT_KEY[store]]: byStore[store] },
        },
      });
    }
  }
  return {
    Type: 'AWS::IAM::Policy',
    Properties: {
      PolicyName: 'endpoint-credentials',
      Roles: [{ Ref: 'IngestRole' }],
      PolicyDocument: { Version: '2012-10-17', Statement: statements },
    },
  };
}

/**
 * The credentials policy under a logical id and name that change with its grants. A change then creates a new policy
 * before the function is updated, and CloudFormation deletes the old one only in its cleanup, after the update: a
 * renamed or removed credential stays readable until no version of the function uses it.
 */
export function namedByGrants<P extends { Properties: { PolicyDocument?: unknown } }>(policy: P): [string, P] {
  const hash = createHash('sha256').update(JSON.stringify(policy.Properties.PolicyDocument)).digest('hex').slice(0, 12);
  const named = { ...policy, Properties: { ...policy.Properties, PolicyName: `endpoint-credentials-${hash}` } };
  return [`IngestCredentialsPolicy${hash}`, named];
}
