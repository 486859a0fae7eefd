import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { type ImportGraph, importCircles, importGraph, relativeSpecifiers } from '../support/imports';

const LIB = fileURLToPath(new URL('../../lib', import.meta.url));

/** A throw-away tree of .ts files, removed after the test. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'imports-'));
  onTestFinished(() => rmSync(root, { recursive: true, force: true }));
  for (const [name, source] of Object.entries(files)) writeFileSync(join(root, name), source);
  return root;
}

describe('lib/ imports', () => {
  it('have no circle, file by file (type-only imports included)', () => {
    const circles = importCircles(importGraph(LIB));
    // The fix: move what both ends need (often a type) into a third file that neither imports back.
    expect(circles, 'import circles under lib/').toEqual([]);
  });
});

/** Folders whose index.ts is the only door from the rest of lib/ (STYLE.md); their own files import each other freely. */
const DOORS = ['delivery', 'event'];

/** Each import of a door folder's file other than its index.ts from a file outside that folder. */
function sideDoors(graph: ImportGraph, doors: string[]): string[] {
  return [...graph].flatMap(([file, targets]) =>
    targets
      .filter((target) => {
        const folder = target.split('/')[0]!;
        return doors.includes(folder) && !file.startsWith(`${folder}/`) && target !== `${folder}/index.ts`;
      })
      .map((target) => `${file} → ${target}`),
  );
}

describe('lib/ folders with a door', () => {
  it('are entered only through their index.ts', () => {
    const found = sideDoors(importGraph(LIB), DOORS);
    // The fix: import from the folder ('../event'), exporting what is needed from its index.ts.
    expect(found, 'imports past a folder index').toEqual([]);
  });

  it('a side door is found; the folder itself and its index are not', () => {
    const graph: ImportGraph = new Map([
      ['a/index.ts', ['a/inner.ts']],
      ['a/inner.ts', ['b/inner.ts']],
      ['b/inner.ts', ['a/index.ts', 'a/inner.ts']],
    ]);
    expect(sideDoors(graph, ['a'])).toEqual(['b/inner.ts → a/inner.ts']);
  });
});

describe('the import walk', () => {
  it('reads static, multi-line, type-only, re-export, side-effect and dynamic imports; not packages', () => {
    const source = [
      "import { a } from './a';",
      'import {',
      '  b,',
      "} from '../b';",
      "import type { C } from './c';",
      "export { d } from './d';",
      "export * from './e';",
      "import './f';",
      "const g = await import('./g');",
      "import { z } from 'zod';",
      "import { readFileSync } from 'node:fs';",
      " * import { inComment } from './h'",
      'export function fifo(url: string) {',
      "  return url.endsWith('.fifo');",
      '}',
    ].join('\n');
    expect(relativeSpecifiers(source)).toEqual(['./a', '../b', './c', './d', './e', './f', './g']);
  });

  it('finds a circle, also through a type-only import and a folder index', () => {
    const root = tree({
      'a.ts': "import { b } from './b';\nexport const a = 1;",
      'b.ts': "import type { C } from './c.js';\nexport const b = 2;",
      'c.ts': "export type { A } from './a';\nexport type C = number;",
      'd.ts': "import { a } from './a';",
    });
    expect(importCircles(importGraph(root))).toEqual(['a.ts → b.ts → c.ts → a.ts']);
  });

  it('fails loudly on an import it cannot resolve rather than skip it', () => {
    const root = tree({ 'a.ts': "import { gone } from './gone';" });
    expect(() => importGraph(root)).toThrow("cannot resolve the import './gone'");
  });
});
