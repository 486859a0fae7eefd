import { defineConfig } from 'vitest/config';
import base from './vitest.config';

// Stryker runs the unit and integration tests for each mutant: the fuzz and e2e suites take a minute each.
export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'] },
});
