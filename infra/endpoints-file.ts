import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { ConfigError } from '../lib/errors';
import { type EndpointConfig, parseEndpointsDocument } from '../lib/subscription/schema';

/** An endpoints file, read and checked with the function's own schema. */
export interface EndpointsFile {
  path: string;
  /** The plain data (what the function gets, as JSON). */
  document: unknown;
  endpoints: EndpointConfig[];
}

/**
 * Reads an endpoints file (YAML, of which JSON is a subset); throws ConfigError naming the file and, for a bad
 * value, the endpoint and the field.
 */
export function readEndpointsFile(path: string): EndpointsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(path, `cannot read the endpoints file: ${(error as Error).message}`);
  }
  const parsed = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const [problem] = parsed.errors;
  if (problem) {
    const line = problem.linePos?.[0];
    throw new ConfigError(
      path,
      `${line ? `line ${line.line}: ` : ''}not valid YAML: ${problem.message.split('\n')[0]}`,
    );
  }
  const document: unknown = parsed.toJS();
  return { path, document, endpoints: parseEndpointsDocument(document, path) };
}
