import type { CloudEvent } from '../event';
import type { Filter, Match } from './schema';

/** Does the event go to this endpoint? */
export type Router = (event: CloudEvent) => boolean;

const list = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

function matcher(values: Match | Match[]): (value: string | undefined) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const value of list(values)) {
    if (typeof value === 'string') exact.add(value);
    else prefixes.push(value.prefix);
  }
  return (value) => value !== undefined && (exact.has(value) || prefixes.some((prefix) => value.startsWith(prefix)));
}

/**
 * Compiles an endpoint's filter: every attribute it names must match, and an attribute with several values matches
 * any of them (as EventBridge patterns and SNS filter policies do). No filter: every event goes there.
 */
export function compileFilter(filter: Filter | undefined): Router {
  if (!filter) return () => true;
  const checks: Router[] = [];
  if (filter.type) {
    const match = matcher(filter.type);
    checks.push((event) => match(event.type));
  }
  if (filter.source) {
    const match = matcher(filter.source);
    checks.push((event) => match(event.source));
  }
  if (filter.subject) {
    const match = matcher(filter.subject);
    checks.push((event) => match(event.subject ?? undefined));
  }
  for (const [name, values] of Object.entries(filter.extensions ?? {})) {
    // Compared as text: an event's 7 and a filter's '7' are the same extension value in HTTP headers too.
    const wanted = new Set(list(values).map(String));
    checks.push((event) => {
      // Own properties only: a filter on 'constructor' must not read Object.prototype's.
      const value = Object.hasOwn(event, name) ? (event as Record<string, unknown>)[name] : undefined;
      return value !== undefined && value !== null && wanted.has(String(value));
    });
  }
  return (event) => checks.every((check) => check(event));
}
