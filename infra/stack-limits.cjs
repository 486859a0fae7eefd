// A local serverless plugin (serverless.yml `plugins:`): refuses, when packaging, a template CloudFormation, IAM or
// CloudWatch would reject at deploy time. It checks the compiled template once the framework has merged everything into it;
// what depends only on the stage params (function name, dashboard graphs) is checked earlier by infra/stage.js.

/** CloudFormation's quotas: resources per stack, and the size of a template uploaded to S3 (as the framework does). */
const MAX_RESOURCES = 500;
const MAX_TEMPLATE_BYTES = 1_000_000;
/** CloudWatch PutMetricAlarm: the longest AlarmName and AlarmDescription. */
const ALARM_TEXT_LIMITS = { AlarmName: ['name', 255], AlarmDescription: ['description', 1024] };
/** IAM: all inline policies of one role together, whitespace excluded. */
const MAX_ROLE_POLICY_CHARS = 10_240;
/** What a reference resolved at deploy time can take at most in a policy (an ARN of this stack, a name). */
const REFERENCE_CHARS = 128;
/** The longest values of the pseudo parameters an ARN of the stage holds ('aws-us-gov' is the longest partition). */
const PSEUDO = { 'AWS::Partition': 'aws-us-gov', 'AWS::AccountId': '123456789012' };

/** A policy value as IAM will see it: intrinsic functions replaced by their longest plausible resolution. */
function resolved(value, region) {
  if (Array.isArray(value)) return value.map((v) => resolved(v, region));
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === 'Fn::Sub' && typeof value['Fn::Sub'] === 'string') {
    return value['Fn::Sub'].replace(/\$\{([^}]+)\}/g, (_, name) =>
      name === 'AWS::Region' ? region : (PSEUDO[name] ?? 'x'.repeat(REFERENCE_CHARS)),
    );
  }
  if (keys.length === 1 && (keys[0] === 'Ref' || keys[0].startsWith('Fn::'))) return 'x'.repeat(REFERENCE_CHARS);
  return Object.fromEntries(keys.map((key) => [key, resolved(value[key], region)]));
}

/** Characters IAM counts for a policy document: its JSON without whitespace. */
function policyChars(document, region) {
  return JSON.stringify(resolved(document, region)).length;
}

/**
 * A policy named after its grants (infra/stage/iam.ts namedByGrants) is replaced, not updated, when they change: the new
 * one is created before the function is updated and the old one deleted only in CloudFormation's cleanup.
 */
const REPLACED_ON_CHANGE = /^IngestCredentialsPolicy[0-9a-f]{12}$/;

/**
 * The inline policies of each role: its own Policies and every AWS::IAM::Policy naming it, with their sizes. A policy
 * replaced on change counts twice: its predecessor passed this same check, so the two fit together.
 */
function rolePolicySizes(template, region) {
  const roles = {};
  for (const [id, resource] of Object.entries(template.Resources ?? {})) {
    if (resource.Type !== 'AWS::IAM::Role') continue;
    roles[id] = (resource.Properties?.Policies ?? []).map((p) => {
      const size = policyChars(p.PolicyDocument, region);
      return [`${id} ${p.PolicyName}: ${size}`, size];
    });
  }
  for (const [id, resource] of Object.entries(template.Resources ?? {})) {
    if (resource.Type !== 'AWS::IAM::Policy') continue;
    for (const role of resource.Properties?.Roles ?? []) {
      if (!role?.Ref || !roles[role.Ref]) continue;
      const size = policyChars(resource.Properties.PolicyDocument, region);
      roles[role.Ref].push(
        REPLACED_ON_CHANGE.test(id)
          ? [`${id}: ${size} × 2: a changed credentials policy is created before the old one is deleted`, size * 2]
          : [`${id}: ${size}`, size],
      );
    }
  }
  return roles;
}

/** Alarm names and descriptions CloudWatch would refuse: endpoint and stage names are part of them. */
function alarmTextErrors(template) {
  const errors = [];
  for (const [id, resource] of Object.entries(template.Resources ?? {})) {
    if (resource.Type !== 'AWS::CloudWatch::Alarm') continue;
    for (const [property, [what, limit]] of Object.entries(ALARM_TEXT_LIMITS)) {
      const text = resource.Properties?.[property];
      if (typeof text !== 'string' || text.length <= limit) continue;
      errors.push(
        `alarm ${id}'s ${what} has ${text.length} characters, over CloudWatch's ${limit}: shorten the endpoint or ` +
          'stage name it holds',
      );
    }
  }
  return errors;
}

/** Why CloudFormation, IAM or CloudWatch would refuse this template, one message per limit it passes (none: it fits). */
function templateLimitErrors(template, { stage, region }) {
  const errors = [];
  const resources = Object.keys(template.Resources ?? {}).length;
  if (resources > MAX_RESOURCES) {
    errors.push(
      `the template has ${resources} resources, over CloudFormation's ${MAX_RESOURCES} per stack: each endpoint ` +
        'adds 2 alarms, and with param lanes a lane (queue, event source, 2 alarms); split the endpoints over two stages',
    );
  }
  // Minified, as the framework uploads it to S3 (lib/plugins/aws/deploy/lib/upload-artifacts.js).
  const bytes = Buffer.byteLength(JSON.stringify(template));
  if (bytes > MAX_TEMPLATE_BYTES) {
    errors.push(
      `the template takes ${bytes} bytes, over CloudFormation's ${MAX_TEMPLATE_BYTES} (1 MB): each endpoint adds ` +
        'alarms, a lane and dashboard metrics; split the endpoints over two stages',
    );
  }
  for (const [role, policies] of Object.entries(rolePolicySizes(template, region))) {
    const total = policies.reduce((sum, [, size]) => sum + size, 0);
    if (total <= MAX_ROLE_POLICY_CHARS) continue;
    const sizes = policies.map(([described]) => described).join(', ');
    errors.push(
      `role ${role}'s inline policies take up to ${total} characters (${sizes}), over IAM's ${MAX_ROLE_POLICY_CHARS} ` +
        'per role: reference fewer secrets (endpoints can share one), use shorter parameter or secret names, or ' +
        'leave credentialsKmsKeyArn empty if the AWS-managed keys will do (the KMS statements repeat every ARN)',
    );
  }
  errors.push(...alarmTextErrors(template));
  return errors.map((error) => `Stage '${stage}': ${error}`);
}

class StackLimits {
  constructor(serverless) {
    this.hooks = {
      // After the framework merged resources and extensions, before it writes the template.
      'before:aws:package:finalize:saveServiceState': () => {
        const provider = serverless.getProvider('aws');
        const errors = templateLimitErrors(serverless.service.provider.compiledCloudFormationTemplate, {
          stage: provider.getStage(),
          region: provider.getRegion(),
        });
        if (errors.length) {
          throw new serverless.classes.Error(
            `${errors.join('\n')}\n(checked by infra/stack-limits.cjs while packaging; nothing was deployed)`,
          );
        }
      },
    };
  }
}

module.exports = StackLimits;
module.exports.templateLimitErrors = templateLimitErrors;
module.exports.LIMITS = { MAX_RESOURCES, MAX_TEMPLATE_BYTES, MAX_ROLE_POLICY_CHARS };
