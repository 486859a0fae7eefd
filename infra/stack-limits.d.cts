// Types of infra/stack-limits.cjs for the tests (the framework loads it as a plugin).
declare class StackLimits {
  constructor(serverless: unknown);
}
declare namespace StackLimits {
  /** Why CloudFormation, IAM or CloudWatch would refuse this template, one message per limit it passes. */
  function templateLimitErrors(
    template: { Resources?: Record<string, { Type: string; Properties?: Record<string, unknown> }> },
    where: { stage: string; region: string },
  ): string[];
  const LIMITS: { MAX_RESOURCES: number; MAX_TEMPLATE_BYTES: number; MAX_ROLE_POLICY_CHARS: number };
}
export = StackLimits;
