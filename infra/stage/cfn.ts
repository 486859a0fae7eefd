// The shapes of the CloudFormation the stage generates.

/** A literal or an intrinsic function: what a generated property value can be. */
export type Value =
  | string
  | { 'Fn::Sub': string }
  | { 'Fn::GetAtt': [string, string] }
  | { Ref: string }
  | { 'Fn::Sub': string }[];

/** One resource of the template. */
export interface Resource {
  Type: string;
  DependsOn?: string[];
  Properties: Record<string, unknown>;
}

/** Resources by logical id. */
export type Resources = Record<string, Resource>;

/** An alarm's AlarmActions and OKActions, or nothing when the stage notifies nowhere (CloudWatch refuses []). */
export type Notifications = { AlarmActions?: Value[]; OKActions?: Value[] };
