import { configDefaults, defineConfig } from 'vitest/config';
import base, { NODE_INDEPENDENT } from './vitest.config';

// The second Node of CI (npm run test:node22): the unit and in-process integration tests, which run the code on the
// Node under test, and the contract fuzz (it runs the handler in-process). Packaging, template, docs, CLI and e2e tests
// ran once on Node 24 (CI time: docs/development.md, "CI").
export default defineConfig({
  ...base,
  test: { ...base.test, exclude: [...configDefaults.exclude, ...NODE_INDEPENDENT] },
});
