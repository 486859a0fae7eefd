import { defineConfig } from 'vitest/config';
import base from './vitest.config';

// Stryker runs the unit and integration tests for each mutant: the fuzz and e2e suites take a minute each.
// MUTATE_TESTS (comma-separated files) narrows a run to a module's own tests: static mutants otherwise run all of them.
const narrowed = process.env.MUTATE_TESTS?.split(',').filter(Boolean);
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: narrowed?.length ? narrowed : ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
  },
});
