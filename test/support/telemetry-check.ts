import { readFileSync } from 'node:fs';
import type { Json, Template } from './package-stack';
import { resourcesOfType } from './package-stack';

// The template's alarms, dashboard and saved queries against what the code really writes: the EMF metrics and the
// JSON log lines of a local run.

/** One metric data point series as CloudWatch stores it: namespace, name, and the dimensions (name → value). */
export interface MetricId {
  namespace: string;
  name: string;
  dimensions: Record<string, string>;
}
export interface EmittedMetric extends MetricId {
  unit: string;
}
/** A metric the template uses, and where. */
export interface MetricUse extends MetricId {
  where: string;
}

/** The metrics in the EMF lines (CloudWatch's embedded metric format), one entry per name and dimension set. */
export function emittedMetrics(lines: Record<string, unknown>[]): EmittedMetric[] {
  const found = new Map<string, EmittedMetric>();
  for (const line of lines) {
    const aws = line._aws as
      | {
          CloudWatchMetrics: {
            Namespace: string;
            Dimensions: string[][];
            Metrics: { Name: string; Unit?: string }[];
          }[];
        }
      | undefined;
    for (const directive of aws?.CloudWatchMetrics ?? []) {
      for (const dimensionSet of directive.Dimensions) {
        const dimensions = Object.fromEntries(dimensionSet.map((d) => [d, String(line[d])]));
        for (const metric of directive.Metrics) {
          const emitted = {
            namespace: directive.Namespace,
            name: metric.Name,
            dimensions,
            unit: metric.Unit ?? 'None',
          };
          found.set(metricKey(emitted), emitted);
        }
      }
    }
  }
  return [...found.values()];
}

export function metricKey(metric: MetricId): string {
  const dimensions = Object.entries(metric.dimensions).sort(([a], [b]) => a.localeCompare(b));
  return `${metric.namespace}/${metric.name}{${dimensions.map(([k, v]) => `${k}=${v}`).join(',')}}`;
}

/** AWS's own metrics the stack may use (CloudWatch docs for SQS and Lambda), with the dimension they need. */
const AWS_METRICS: Record<string, { dimension: string; names: string[] }> = {
  'AWS/SQS': {
    dimension: 'QueueName',
    names: [
      'ApproximateAgeOfOldestMessage',
      'ApproximateNumberOfMessagesDelayed',
      'ApproximateNumberOfMessagesNotVisible',
      'ApproximateNumberOfMessagesVisible',
      'NumberOfEmptyReceives',
      'NumberOfMessagesDeleted',
      'NumberOfMessagesReceived',
      'NumberOfMessagesSent',
      'SentMessageSize',
    ],
  },
  'AWS/Lambda': {
    dimension: 'FunctionName',
    names: ['ConcurrentExecutions', 'Duration', 'Errors', 'Invocations', 'Throttles'],
  },
};

const MATH_FUNCTIONS = new Set([
  'IF',
  'FILL',
  'AND',
  'OR',
  'NOT',
  'SUM',
  'AVG',
  'MIN',
  'MAX',
  'METRICS',
  'ABS',
  'RATE',
  'DIFF',
]);

/** Ids a metric-math expression refers to. */
function expressionIds(expression: string): string[] {
  return [...expression.matchAll(/\b([a-z][A-Za-z0-9_]*)\b/g)]
    .map((m) => m[1]!)
    .filter((id) => !MATH_FUNCTIONS.has(id));
}

interface Collected {
  uses: MetricUse[];
  errors: string[];
}

function alarmMetrics(template: Template, collected: Collected): void {
  for (const [id, alarm] of resourcesOfType(template, 'AWS::CloudWatch::Alarm')) {
    const p = alarm.Properties ?? {};
    const dims = (list: unknown) =>
      Object.fromEntries(((list as { Name: string; Value: unknown }[]) ?? []).map((d) => [d.Name, stringOf(d.Value)]));
    if (typeof p.MetricName === 'string') {
      collected.uses.push({
        namespace: String(p.Namespace),
        name: p.MetricName,
        dimensions: dims(p.Dimensions),
        where: `alarm ${id}`,
      });
    }
    const queries = (p.Metrics as Json[] | undefined) ?? [];
    const ids = new Set(queries.map((q) => String(q.Id)));
    for (const query of queries) {
      const metric = (query.MetricStat as { Metric?: Json } | undefined)?.Metric;
      if (metric) {
        collected.uses.push({
          namespace: String(metric.Namespace),
          name: String(metric.MetricName),
          dimensions: dims(metric.Dimensions),
          where: `alarm ${id} (${String(query.Id)})`,
        });
      }
      for (const ref of expressionIds(String(query.Expression ?? ''))) {
        if (!ids.has(ref))
          collected.errors.push(
            `alarm ${id}: expression ${String(query.Id)} uses '${ref}', which is no metric of the alarm`,
          );
      }
    }
  }
}

/** Placeholders of the dashboard body (a Fn::Sub) as they read: ${IngestQueue.QueueName} stays as it is. */
function stringOf(value: unknown): string {
  if (typeof value === 'string') return value;
  const object = value as Record<string, unknown>;
  if (object.Ref) return `\${${String(object.Ref)}}`;
  const getAtt = object['Fn::GetAtt'] as string[] | undefined;
  return getAtt ? `\${${getAtt.join('.')}}` : JSON.stringify(value);
}

/** The widgets of each dashboard, by dashboard id (the body is a Fn::Sub of JSON). */
function dashboards(template: Template): [string, { type: string; properties: Json }[]][] {
  return resourcesOfType(template, 'AWS::CloudWatch::Dashboard').map(([id, dashboard]) => {
    const body = (dashboard.Properties as { DashboardBody: { 'Fn::Sub': string } }).DashboardBody['Fn::Sub'];
    return [id, (JSON.parse(body) as { widgets: { type: string; properties: Json }[] }).widgets];
  });
}

function dashboardMetrics(template: Template, collected: Collected): void {
  for (const [id, widgets] of dashboards(template)) {
    for (const widget of widgets.filter((w) => w.type === 'metric')) {
      const where = `dashboard ${id} widget '${String(widget.properties.title)}'`;
      const rows = widget.properties.metrics as unknown[][];
      const ids = new Set(rows.map((row) => (row.at(-1) as Json | undefined)?.id).filter(Boolean));
      for (const row of rows) {
        const options = (typeof row.at(-1) === 'object' ? row.at(-1) : {}) as Json;
        if (typeof options.expression === 'string') {
          for (const ref of expressionIds(options.expression)) {
            if (!ids.has(ref))
              collected.errors.push(`${where}: expression uses '${ref}', which is no metric of the widget`);
          }
          continue;
        }
        const [namespace, name, ...rest] = row.filter((cell) => typeof cell === 'string') as string[];
        const dimensions: Record<string, string> = {};
        for (let i = 0; i + 1 < rest.length; i += 2) dimensions[rest[i]!] = rest[i + 1]!;
        collected.uses.push({ namespace: namespace!, name: name!, dimensions, where });
      }
    }
  }
}

/** Every metric of an alarm or a dashboard widget the stack uses, with errors in expressions. */
export function templateMetrics(template: Template): Collected {
  const collected: Collected = { uses: [], errors: [] };
  alarmMetrics(template, collected);
  dashboardMetrics(template, collected);
  return collected;
}

/**
 * Errors for every metric the template uses that the code does not emit with exactly those dimensions (AWS's own
 * metrics: a documented name with its dimension), and every emitted metric neither on the dashboard nor `undisplayed`.
 */
export function checkMetrics(template: Template, emitted: EmittedMetric[], undisplayed: readonly string[]): string[] {
  const { uses, errors } = templateMetrics(template);
  const emittedKeys = new Set(emitted.map(metricKey));
  for (const use of uses) {
    const aws = AWS_METRICS[use.namespace];
    if (aws) {
      const ok = aws.names.includes(use.name) && Object.keys(use.dimensions).join() === aws.dimension;
      if (!ok)
        errors.push(
          `${use.where}: ${metricKey(use)} is not an ${use.namespace} metric with dimension ${aws.dimension}`,
        );
    } else if (!emittedKeys.has(metricKey(use))) {
      const sameName = emitted.filter((e) => e.namespace === use.namespace && e.name === use.name).map(metricKey);
      errors.push(
        `${use.where}: ${metricKey(use)} is never emitted` +
          (sameName.length ? ` (emitted: ${sameName.join(', ')})` : ' (no metric of that name)'),
      );
    }
  }
  const onDashboard = new Set(uses.filter((u) => u.where.startsWith('dashboard')).map(metricKey));
  for (const metric of emitted) {
    if (!onDashboard.has(metricKey(metric)) && !undisplayed.includes(metric.name)) {
      errors.push(`${metricKey(metric)} is emitted but on no dashboard widget, nor listed as undisplayed`);
    }
  }
  return errors;
}

const QUERY_KEYWORDS = new Set(
  (
    'fields filter stats sort limit by as and or not like in desc asc display parse dedup unmask source ' +
    'count count_distinct latest earliest max min sum avg pct stddev bin ispresent isempty isblank strlen ' +
    'tolower toupper concat replace'
  ).split(' '),
);

/** The log fields a Logs Insights query reads (filters, displays, aggregates), aliases and @ fields left out. */
export function queryFields(query: string): string[] {
  const text = query
    .replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/^\s*SOURCE\s+\S+/i, ' ')
    .replace(/\bbin\(\s*\d+[smhd]\s*\)/g, ' ');
  const aliases = new Set([...text.matchAll(/\bas\s+([A-Za-z_][\w.]*)/g)].map((m) => m[1]!));
  const fields = [...text.matchAll(/(?<![\w@.])([A-Za-z_][\w.]*)/g)]
    .map((m) => m[1]!)
    .filter((word) => !QUERY_KEYWORDS.has(word.toLowerCase()) && !aliases.has(word) && !/^\d/.test(word));
  return [...new Set(fields)];
}

/** A JSON log line's fields as Logs Insights names them: nested keys a.b, array elements a.0, a.1, ... */
export function flattenLine(value: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      flattenLine(v, prefix ? `${prefix}.${i}` : String(i), out);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) flattenLine(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = String(value);
  return out;
}

/** Evaluates one `filter` clause: field = 'text', field like 'text' (a substring), field in ['a', 'b'], and, or, not, (). */
function filterHolds(clause: string, fields: Record<string, string>): boolean {
  const tokens = [...clause.matchAll(/\s*(\(|\)|\[|\]|,|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|=|[@\w.]+)/g)].map(
    (m) => m[1]!,
  );
  let i = 0;
  const literal = (token: string) => token.slice(1, -1).replace(/\\(.)/g, '$1');
  const factor = (): boolean => {
    if (tokens[i] === '(') {
      i++;
      const value = or();
      if (tokens[i++] !== ')') throw new Error(`unbalanced parentheses in filter ${clause}`);
      return value;
    }
    if (tokens[i]?.toLowerCase() === 'not') {
      i++;
      return !factor();
    }
    const [field, op, value] = [tokens[i++]!, tokens[i++]?.toLowerCase(), tokens[i++]];
    if (op === 'in' && value === '[') {
      const list: string[] = [];
      while (tokens[i] !== undefined && tokens[i] !== ']') {
        const item = tokens[i++]!;
        if (item !== ',') list.push(literal(item));
      }
      i++;
      return fields[field] !== undefined && list.includes(fields[field]!);
    }
    if (!value || !/^['"]/.test(value))
      throw new Error(`filter ${clause}: only = and like with a string are evaluated`);
    const actual = fields[field];
    if (actual === undefined) return false;
    if (op === '=') return actual === literal(value);
    if (op === 'like') return actual.includes(literal(value));
    throw new Error(`filter ${clause}: operator ${String(op)} is not evaluated`);
  };
  const and = (): boolean => {
    let value = factor();
    while (tokens[i]?.toLowerCase() === 'and') {
      i++;
      value = factor() && value;
    }
    return value;
  };
  const or = (): boolean => {
    let value = and();
    while (tokens[i]?.toLowerCase() === 'or') {
      i++;
      value = and() || value;
    }
    return value;
  };
  const result = or();
  if (i !== tokens.length) throw new Error(`filter ${clause}: unexpected '${tokens[i]}'`);
  return result;
}

/** Whether a log line passes every `filter` command of a Logs Insights query (@message is the line as written). */
export function passesFilters(query: string, line: Record<string, unknown>): boolean {
  const fields = { ...flattenLine(line), '@message': JSON.stringify(line) };
  return query
    .split(/\s*\|\s*/)
    .map((command) => command.trim())
    .filter((command) => /^filter\s/i.test(command))
    .every((command) => filterHolds(command.slice('filter'.length), fields));
}

/**
 * Every saved query (and dashboard log widget) field missing from the log lines it selects: the lines passing its
 * filters (all lines when none does, as with the event history's placeholder), flattened as Logs Insights does.
 */
export function checkQueries(template: Template, lines: Record<string, unknown>[]): string[] {
  const logLines = lines.filter((line) => !('_aws' in line));
  const keysOf = (selected: Record<string, unknown>[]) =>
    new Set(selected.flatMap((line) => Object.keys(flattenLine(line))));
  const queries: [string, string][] = resourcesOfType(template, 'AWS::Logs::QueryDefinition').map(([id, q]) => [
    `query ${id}`,
    String(q.Properties?.QueryString),
  ]);
  for (const [id, widgets] of dashboards(template)) {
    for (const widget of widgets) {
      if (widget.type === 'log') {
        queries.push([`dashboard ${id} '${String(widget.properties.title)}'`, String(widget.properties.query)]);
      }
    }
  }
  return queries.flatMap(([where, query]) => {
    const selected = logLines.filter((line) => passesFilters(query, line));
    const keys = keysOf(selected.length ? selected : logLines);
    return queryFields(query)
      .filter((field) => !keys.has(field))
      .map(
        (field) =>
          `${where}: field '${field}' is in no log line ${selected.length ? 'its filter selects' : 'the function writes'}`,
      );
  });
}

/** The saved "Event history by id" query of infra/logs.yml, as the operator runs it for one id. */
export function eventHistoryQuery(id: string): string {
  const text = readFileSync(new URL('../../infra/logs.yml', import.meta.url), 'utf8');
  const block = /QueryEventHistory:[\s\S]*?QueryString: \|-\n((?:\s{8}.*\n?)+)/.exec(text)![1]!;
  return block.replace(/^\s{8}/gm, '').replaceAll('EVENT_OR_MESSAGE_ID', id);
}

/** Whether the event history query for `id` returns this log line. */
export function eventHistoryMatches(line: Record<string, unknown>, id: string): boolean {
  return passesFilters(eventHistoryQuery(id), line);
}
