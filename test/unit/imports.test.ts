import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { importCircles, importGraph, relativeSpecifiers } from '../support/imports';

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
