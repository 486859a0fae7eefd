import { loadAwsServiceSpec } from '@aws-cdk/aws-service-spec';
import type { PropertyType, Resource, SpecDatabase, TypeDefinition } from '@aws-cdk/service-spec-types';
import type { Template } from './package-stack';

// Checks a CloudFormation template against CloudFormation's own resource schemas (@aws-cdk/aws-service-spec, the
// registry schemas AWS publishes): types, properties and their types, required properties, and every reference.

export const PSEUDO_PARAMETERS = new Set([
  'AWS::AccountId',
  'AWS::NotificationARNs',
  'AWS::NoValue',
  'AWS::Partition',
  'AWS::Region',
  'AWS::StackId',
  'AWS::StackName',
  'AWS::URLSuffix',
]);
const RESOURCE_KEYS = new Set([
  'Type',
  'Properties',
  'DependsOn',
  'Condition',
  'DeletionPolicy',
  'UpdateReplacePolicy',
  'Metadata',
  'CreationPolicy',
  'UpdatePolicy',
]);

/** CloudFormation's intrinsic functions (and the Condition function of condition expressions); no others exist. */
export const INTRINSICS = new Set([
  'Ref',
  'Condition',
  'Fn::GetAtt',
  'Fn::Sub',
  'Fn::Join',
  'Fn::If',
  'Fn::Select',
  'Fn::Split',
  'Fn::GetAZs',
  'Fn::ImportValue',
  'Fn::FindInMap',
  'Fn::Base64',
  'Fn::Cidr',
  'Fn::Equals',
  'Fn::Not',
  'Fn::And',
  'Fn::Or',
  'Fn::ToJsonString',
  'Fn::Length',
]);

let spec: Promise<SpecDatabase> | undefined;
export function resourceSpec(): Promise<SpecDatabase> {
  spec ??= loadAwsServiceSpec();
  return spec;
}

function lookupType(db: SpecDatabase, type: string): Resource | undefined {
  return db.lookup('resource', 'cloudFormationType', 'equals', type)[0];
}

type Value = unknown;
const isObject = (value: Value): value is Record<string, Value> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** An intrinsic function call ({ Ref } or { Fn::X }): its value is known only at deploy time. */
function intrinsic(value: Value): [string, Value] | undefined {
  if (!isObject(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== 1) return undefined;
  const [key] = keys as [string];
  return key === 'Ref' || key.startsWith('Fn::') ? [key, value[key]] : undefined;
}

function describe(type: PropertyType): string {
  switch (type.type) {
    case 'array':
      return `array of ${describe(type.element)}`;
    case 'map':
      return `map of ${describe(type.element)}`;
    case 'union':
      return type.types.map(describe).join(' | ');
    case 'ref':
      return 'object';
    default:
      return type.type;
  }
}

class Checker {
  readonly errors: string[] = [];
  constructor(private readonly db: SpecDatabase) {}

  /** Errors of `value` against `type`, at `path`. */
  value(value: Value, type: PropertyType, path: string) {
    const call = intrinsic(value);
    if (call) return this.intrinsicValue(call, type, path);
    if (type.type === 'union') {
      const fits = type.types.some((option) => {
        const sub = new Checker(this.db);
        sub.value(value, option, path);
        return sub.errors.length === 0;
      });
      if (!fits) this.errors.push(`${path}: ${JSON.stringify(value)} is not ${describe(type)}`);
      return;
    }
    const wrong = (): void => {
      this.errors.push(`${path}: ${JSON.stringify(value).slice(0, 80)} is not ${describe(type)}`);
    };
    switch (type.type) {
      case 'string':
      case 'date-time':
        if (typeof value !== 'string') wrong();
        else if (type.type === 'string' && type.allowedValues && !type.allowedValues.includes(value)) wrong();
        return;
      case 'number':
        if (!(typeof value === 'number' || (typeof value === 'string' && value.trim() !== '' && !Number.isNaN(+value))))
          wrong();
        return;
      case 'integer':
        if (!Number.isInteger(typeof value === 'string' && value.trim() !== '' ? Number(value) : value)) wrong();
        return;
      case 'boolean':
        if (!(typeof value === 'boolean' || value === 'true' || value === 'false')) wrong();
        return;
      case 'json':
        return;
      case 'null':
        if (value !== null) wrong();
        return;
      case 'tag':
        if (!isObject(value) || !('Key' in value) || !('Value' in value)) wrong();
        return;
      case 'array':
        if (!Array.isArray(value)) return wrong();
        value.forEach((element, i) => {
          this.value(element, type.element, `${path}[${i}]`);
        });
        return;
      case 'map':
        if (!isObject(value)) return wrong();
        for (const [key, element] of Object.entries(value)) this.value(element, type.element, `${path}.${key}`);
        return;
      case 'ref': {
        if (!isObject(value)) return wrong();
        const definition = this.db.get('typeDefinition', type.reference) as TypeDefinition;
        this.properties(value, definition.properties, definition.name, path);
        return;
      }
    }
  }

  /** Fn::If is checked branch by branch; other functions yield a string, list or number known only at deploy. */
  private intrinsicValue([name, args]: [string, Value], type: PropertyType, path: string) {
    if (name === 'Fn::If' && Array.isArray(args)) {
      for (const branch of args.slice(1)) {
        if (isObject(branch) && branch.Ref === 'AWS::NoValue') continue;
        this.value(branch, type, path);
      }
      return;
    }
    const producesList = ['Fn::Split', 'Fn::GetAZs', 'Fn::Cidr'].includes(name);
    const wantsList = type.type === 'array' || (type.type === 'union' && type.types.some((t) => t.type === 'array'));
    if (producesList && !wantsList)
      this.errors.push(`${path}: ${name} yields a list, the property is ${describe(type)}`);
  }

  properties(
    value: Record<string, Value>,
    schema: Record<string, { type: PropertyType; required?: boolean }>,
    owner: string,
    path: string,
  ): void {
    for (const [key, element] of Object.entries(value)) {
      const property = schema[key];
      if (!property) {
        this.errors.push(`${path}: unknown property '${key}' for ${owner}`);
        continue;
      }
      this.value(element, property.type, `${path}.${key}`);
    }
    for (const [key, property] of Object.entries(schema)) {
      if (property.required && !(key in value)) {
        this.errors.push(`${path}: required property '${key}' of ${owner} is missing`);
      }
    }
  }
}

/** Resource types, their properties (names, types, required ones) and top-level keys, against the schemas. */
export async function checkResources(template: Template): Promise<string[]> {
  const db = await resourceSpec();
  const checker = new Checker(db);
  for (const [id, resource] of Object.entries(template.Resources)) {
    const path = `Resources.${id}`;
    for (const key of Object.keys(resource)) {
      if (!RESOURCE_KEYS.has(key)) checker.errors.push(`${path}: unknown resource attribute '${key}'`);
    }
    const schema = lookupType(db, resource.Type);
    if (!schema) {
      checker.errors.push(`${path}: resource type '${resource.Type}' does not exist`);
      continue;
    }
    checker.properties(resource.Properties ?? {}, schema.properties, resource.Type, `${path}.Properties`);
  }
  return checker.errors;
}

/** Follows every reference of a template, collecting those that point at nothing. */
class References {
  readonly errors: string[] = [];
  private readonly parameters: Set<string>;
  readonly conditions: Set<string>;
  /** The condition of the resource or output being walked, and the Fn::If conditions around the current value. */
  owner: string | undefined;
  private readonly guards: string[] = [];

  constructor(
    private readonly db: SpecDatabase,
    readonly template: Template,
  ) {
    this.parameters = new Set(Object.keys(template.Parameters ?? {}));
    this.conditions = new Set(Object.keys(template.Conditions ?? {}));
  }

  ref(name: string, path: string, locals: Set<string> = new Set()): void {
    const known = name in this.template.Resources || this.parameters.has(name) || PSEUDO_PARAMETERS.has(name);
    if (!known && !locals.has(name)) {
      this.errors.push(`${path}: Ref to '${name}', which is no resource, parameter or pseudo-parameter`);
    }
    if (!locals.has(name)) this.conditional(name, path);
  }

  /** A resource created only under a condition may be named only where that condition holds. */
  private conditional(id: string, path: string): void {
    const condition = this.template.Resources[id]?.Condition;
    // A condition that does not exist is reported once, at the resource.
    if (!condition || !this.conditions.has(condition) || condition === this.owner || this.guards.includes(condition)) {
      return;
    }
    this.errors.push(
      `${path}: '${id}' exists only when condition '${condition}' holds: name it inside Fn::If [${condition}, ...]`,
    );
  }

  getAtt(id: string, attribute: string, path: string): void {
    const resource = this.template.Resources[id];
    if (!resource) {
      this.errors.push(`${path}: Fn::GetAtt on '${id}', which is no resource`);
      return;
    }
    this.conditional(id, path);
    const schema = lookupType(this.db, resource.Type);
    if (schema && !(attribute in schema.attributes)) {
      this.errors.push(
        `${path}: Fn::GetAtt ${id}.${attribute}: ${resource.Type} has no attribute '${attribute}' ` +
          `(it has ${Object.keys(schema.attributes).join(', ')})`,
      );
    }
  }

  sub(text: string, locals: Set<string>, path: string): void {
    for (const [, variable] of text.matchAll(/\$\{([^!}][^}]*)\}/g)) {
      const name = variable!.trim();
      const dot = name.indexOf('.');
      if (dot > 0 && !name.startsWith('AWS::')) this.getAtt(name.slice(0, dot), name.slice(dot + 1), path);
      else this.ref(name, path, locals);
    }
  }

  condition(name: string, path: string): void {
    if (!this.conditions.has(name)) this.errors.push(`${path}: condition '${name}' does not exist`);
  }

  walk(value: Value, path: string): void {
    if (Array.isArray(value)) {
      value.forEach((element, i) => {
        this.walk(element, `${path}[${i}]`);
      });
      return;
    }
    if (!isObject(value)) return;
    const call = intrinsic(value) ?? (Object.keys(value).join() === 'Condition' ? ['Condition', value.Condition] : []);
    const [name, args] = call as [string | undefined, Value];
    if (name && !INTRINSICS.has(name)) {
      this.errors.push(`${path}: '${name}' is no CloudFormation intrinsic function`);
    }
    if (name === 'Fn::If' && Array.isArray(args)) {
      this.walkIf(args, path);
    } else if (name === 'Ref' && typeof args === 'string') {
      this.ref(args, path);
    } else if (name === 'Condition' && typeof args === 'string') {
      this.condition(args, path);
    } else if (name === 'Fn::GetAtt') {
      const [id, attribute] = typeof args === 'string' ? args.split(/\.(.*)/s) : (args as string[]);
      this.getAtt(String(id), String(attribute), path);
    } else if (name === 'Fn::Sub') {
      const [text, variables] = typeof args === 'string' ? [args, {}] : (args as [string, Record<string, Value>]);
      this.sub(text, new Set(Object.keys(variables ?? {})), path);
      this.walk(variables, path);
    } else {
      this.walkObject(value, path);
    }
  }

  /** Fn::If: its condition must exist, and its first branch is walked knowing that condition holds. */
  private walkIf([condition, yes, no]: Value[], path: string): void {
    if (!this.conditions.has(String(condition))) {
      this.errors.push(`${path}: Fn::If on condition '${String(condition)}', which does not exist`);
    }
    this.guards.push(String(condition));
    this.walk(yes, `${path}.Fn::If[1]`);
    this.guards.pop();
    this.walk(no, `${path}.Fn::If[2]`);
  }

  /** Any other function or plain object: look inside. */
  private walkObject(value: Record<string, Value>, path: string): void {
    for (const [key, element] of Object.entries(value)) this.walk(element, `${path}.${key}`);
  }
}

/** Where a Ref, Fn::GetAtt, Fn::Sub variable, condition or DependsOn points at something the template lacks. */
export async function checkReferences(template: Template): Promise<string[]> {
  const refs = new References(await resourceSpec(), template);
  for (const [id, resource] of Object.entries(template.Resources)) {
    const path = `Resources.${id}`;
    for (const target of [resource.DependsOn ?? []].flat()) {
      if (!(target in template.Resources)) refs.errors.push(`${path}.DependsOn: '${target}' is no resource`);
    }
    if (resource.Condition) refs.condition(resource.Condition, `${path}.Condition`);
    refs.owner = resource.Condition;
    refs.walk(resource.Properties ?? {}, `${path}.Properties`);
  }
  for (const [id, output] of Object.entries(template.Outputs ?? {})) {
    if (typeof output.Condition === 'string') refs.condition(output.Condition, `Outputs.${id}.Condition`);
    refs.owner = typeof output.Condition === 'string' ? output.Condition : undefined;
    refs.walk(output.Value, `Outputs.${id}.Value`);
  }
  refs.owner = undefined;
  refs.walk(template.Conditions ?? {}, 'Conditions');
  return refs.errors;
}

/** CloudWatch's PutDashboard limits that the resource schema cannot see inside the body's JSON text. */
const DASHBOARD_LIMITS = { widgets: 500, alarmsPerWidget: 100, metricsPerGraph: 500 };

/** Each dashboard body: valid JSON, within CloudWatch's widget, alarm-widget and graph limits. */
export function checkDashboards(template: Template): string[] {
  const errors: string[] = [];
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::CloudWatch::Dashboard') continue;
    const path = `Resources.${id}.Properties.DashboardBody`;
    const raw = resource.Properties?.DashboardBody;
    const text = typeof raw === 'string' ? raw : isObject(raw) ? raw['Fn::Sub'] : undefined;
    let body: { widgets?: { type?: string; properties?: { alarms?: unknown[]; metrics?: unknown[] } }[] };
    try {
      body = JSON.parse(String(text));
    } catch (error) {
      errors.push(`${path}: not JSON (${(error as Error).message})`);
      continue;
    }
    const widgets = body.widgets ?? [];
    if (widgets.length > DASHBOARD_LIMITS.widgets) errors.push(`${path}: ${widgets.length} widgets, over 500`);
    widgets.forEach((widget, i) => {
      const alarms = widget.properties?.alarms?.length ?? 0;
      if (widget.type === 'alarm' && alarms > DASHBOARD_LIMITS.alarmsPerWidget) {
        errors.push(`${path}: widget ${i} (alarm) lists ${alarms} alarms, over CloudWatch's 100 per alarm widget`);
      }
      const metrics = widget.properties?.metrics?.length ?? 0;
      if (widget.type === 'metric' && metrics > DASHBOARD_LIMITS.metricsPerGraph) {
        errors.push(`${path}: widget ${i} (metric) has ${metrics} metrics, over CloudWatch's 500 per graph`);
      }
    });
  }
  return errors;
}

const DELETION_POLICIES = ['Delete', 'Retain', 'RetainExceptOnCreate', 'Snapshot'];
const UPDATE_REPLACE_POLICIES = ['Delete', 'Retain', 'Snapshot'];
const STATEMENT_KEYS = ['Sid', 'Effect', 'Principal', 'NotPrincipal', 'Action', 'NotAction', 'Resource', 'NotResource'];

/** An IAM policy document's shape: Version, Statement, and each statement's keys and Effect. */
function policyDocument(document: Value, path: string, trust: boolean, errors: string[]): void {
  if (!isObject(document)) return;
  // Optional (IAM then assumes 2008-10-17, as the framework's own bucket policy does), but never another value.
  if (document.Version !== undefined && !['2012-10-17', '2008-10-17'].includes(String(document.Version))) {
    errors.push(`${path}.Version: ${JSON.stringify(document.Version)} is not 2012-10-17`);
  }
  const statements = [document.Statement].flat();
  if (document.Statement === undefined) errors.push(`${path}: no Statement`);
  statements.forEach((statement, i) => {
    const at = `${path}.Statement[${i}]`;
    if (!isObject(statement)) return;
    for (const key of Object.keys(statement)) {
      if (![...STATEMENT_KEYS, 'Condition'].includes(key)) errors.push(`${at}: unknown key '${key}'`);
    }
    if (!['Allow', 'Deny'].includes(String(statement.Effect))) {
      errors.push(`${at}.Effect: ${JSON.stringify(statement.Effect)} is not Allow or Deny`);
    }
    if (!('Action' in statement) && !('NotAction' in statement)) errors.push(`${at}: no Action`);
    if (!trust && !('Resource' in statement) && !('NotResource' in statement)) errors.push(`${at}: no Resource`);
  });
}

/** Every policy document under a resource's properties (inline role policies included). */
function policyDocuments(value: Value, path: string, errors: string[]): void {
  if (Array.isArray(value)) {
    value.forEach((element, i) => {
      policyDocuments(element, `${path}[${i}]`, errors);
    });
  }
  if (!isObject(value)) return;
  for (const [key, element] of Object.entries(value)) {
    if (key === 'PolicyDocument' || key === 'AssumeRolePolicyDocument') {
      policyDocument(element, `${path}.${key}`, key === 'AssumeRolePolicyDocument', errors);
    } else policyDocuments(element, `${path}.${key}`, errors);
  }
}

/**
 * What the schemas type only as JSON or as any string: DeletionPolicy and UpdateReplacePolicy values, an SQS
 * RedrivePolicy's keys, and IAM policy documents.
 */
export function checkJsonProperties(template: Template): string[] {
  const errors: string[] = [];
  for (const [id, resource] of Object.entries(template.Resources)) {
    const path = `Resources.${id}`;
    if (resource.DeletionPolicy !== undefined && !DELETION_POLICIES.includes(resource.DeletionPolicy)) {
      errors.push(`${path}.DeletionPolicy: '${resource.DeletionPolicy}' is not one of ${DELETION_POLICIES.join(', ')}`);
    }
    const replace = resource.UpdateReplacePolicy;
    if (replace !== undefined && !UPDATE_REPLACE_POLICIES.includes(replace)) {
      errors.push(`${path}.UpdateReplacePolicy: '${replace}' is not one of ${UPDATE_REPLACE_POLICIES.join(', ')}`);
    }
    const redrive = resource.Type === 'AWS::SQS::Queue' ? resource.Properties?.RedrivePolicy : undefined;
    if (isObject(redrive)) {
      for (const key of Object.keys(redrive)) {
        if (!['deadLetterTargetArn', 'maxReceiveCount'].includes(key)) {
          errors.push(`${path}.Properties.RedrivePolicy: unknown key '${key}' (deadLetterTargetArn, maxReceiveCount)`);
        }
      }
      for (const key of ['deadLetterTargetArn', 'maxReceiveCount']) {
        if (!(key in redrive)) errors.push(`${path}.Properties.RedrivePolicy: '${key}' is missing`);
      }
    }
    policyDocuments(resource.Properties ?? {}, `${path}.Properties`, errors);
  }
  return errors;
}
