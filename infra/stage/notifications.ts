// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// Where the stage's alarms notify: a given SNS topic, one subscribing alarmEmail, or nowhere.

import type { Notifications, Resources, Value } from './cfn';
import type { Stage } from './load';

type Addressees = Pick<Stage, 'alarmTopicArn' | 'alarmEmail'>;

/**
 * Where every alarm notifies: the given topic, else a topic of the stack subscribing the e-mail address, else nowhere.
 * Decided here because the stage is known: the template carries no condition whose operands are constants.
 */
function alarmActions(stage: Addressees): Value[] {
  if (stage.alarmTopicArn) return [stage.alarmTopicArn];
  if (stage.alarmEmail) return [{ Ref: 'AlarmTopic' }];
  return [];
}

/** AlarmActions and OKActions of an alarm, or nothing when the stage notifies nowhere (CloudWatch refuses []). */
export function notifications(stage: Addressees): Notifications {
  const actions = alarmActions(stage);
  return actions.length ? { AlarmActions: actions, OKActions: actions } : {};
}

/** The SNS topic subscribing alarmEmail, when the stage gives an e-mail address and no topic of its own. */
export function alarmTopic(stage: Pick<Stage, 'service' | 'stage'> & Addressees): {
  Resources: Resources;
  Outputs: Record<string, { Value: Value }>;
} {
  if (stage.alarmTopicArn || !stage.alarmEmail) return { Resources: {}, Outputs: {} };
  const name = `${stage.service}-${stage.stage}`;
  return {
    Resources: {
      AlarmTopic: {
        Type: 'AWS::SNS::Topic',
        Properties: { TopicName: `${name}-alarms`, DisplayName: `${stage.service} ${stage.stage} alarms` },
      },
      AlarmTopicEmailSubscription: {
        Type: 'AWS::SNS::Subscription',
        Properties: { TopicArn: { Ref: 'AlarmTopic' }, Protocol: 'email', Endpoint: stage.alarmEmail },
      },
    },
    Outputs: { AlarmTopicArn: { Value: { Ref: 'AlarmTopic' } } },
  };
}

/** The alarms of infra/alarms.yml: they notify where the generated ones do. */
export const STATIC_ALARM_IDS = ['DeadLetterQueueAlarm', 'QueueAgeAlarm', 'FunctionErrorsAlarm'];
