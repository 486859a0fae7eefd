import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** Each file's relative imports, resolved to files: `from` is relative to the walked root, as are the targets. */
export type ImportGraph = Map<string, string[]>;

// `import … from '…'` and `export … from '…'`, type-only too (no parenthesis, `=` or string before the `from`).
const FROM = /^[ \t]*(?:import|export)\b[^'"`;()=]*?\bfrom\s*['"]([^'"]+)['"]/gm;
const SIDE_EFFECT = /^[ \t]*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The relative module specifiers a TypeScript file imports (static, re-exports, type-only and dynamic). */
export function relativeSpecifiers(source: string): string[] {
  const found = [FROM, SIDE_EFFECT, DYNAMIC]
    .flatMap((pattern) => [...source.matchAll(pattern)])
    .map((match) => match[1]!);
  return found.filter((specifier) => specifier.startsWith('.'));
}

/** The .ts file a relative specifier names: itself, with .ts, its .js twin, or its folder's index.ts. */
function resolveSpecifier(fromFile: string, specifier: string): string {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [base, `${base}.ts`, base.replace(/\.js$/, '.ts'), join(base, 'index.ts')];
  const file = candidates.find((candidate) => candidate.endsWith('.ts') && existsSync(candidate));
  if (!file) throw new Error(`${fromFile}: cannot resolve the import '${specifier}' to a .ts file under the tree`);
  return file;
}

/** The file-level import graph of every .ts file under `root` (declaration files included; tests are not there). */
export function importGraph(root: string): ImportGraph {
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
  const graph: ImportGraph = new Map();
  for (const file of files.sort()) {
    const path = join(root, file);
    const targets = relativeSpecifiers(readFileSync(path, 'utf8')).map((spec) => resolveSpecifier(path, spec));
    graph.set(file, [...new Set(targets.map((target) => relative(root, target)))]);
  }
  return graph;
}

/**
 * The import circles of the graph, each as the path that closes it (`a.ts → b.ts → a.ts`), one per circle found by a
 * depth-first walk (a file in several circles may show in one only: fixing it shows the next).
 */
export function importCircles(graph: ImportGraph): string[] {
  const circles: string[] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const onPath = new Set<string>();
  const visit = (file: string): void => {
    if (done.has(file)) return;
    if (onPath.has(file)) {
      circles.push([...path.slice(path.indexOf(file)), file].join(' → '));
      return;
    }
    path.push(file);
    onPath.add(file);
    for (const target of graph.get(file) ?? []) visit(target);
    path.pop();
    onPath.delete(file);
    done.add(file);
  };
  for (const file of graph.keys()) visit(file);
  return circles;
}
