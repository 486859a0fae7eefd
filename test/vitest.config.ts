import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { TEST_ENV } from './support/env';

/**
 * Tests whose outcome does not depend on the Node running the test files: they package the stack (osls, esbuild),
 * read the template or the docs, or run the CLIs and the local stack as child processes on the Node first on PATH
 * (Node 24 under npm test), or Node 24 by name (runtime.test.ts). CI runs them once.
 */
export const NODE_INDEPENDENT = [
  'test/integration/{docs,iam,operator-cli,package,runtime,telemetry,template}.test.ts',
  'test/e2e/**',
];

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: [
      'test/unit/**/*.test.ts',
      'test/integration/**/*.test.ts',
      'test/e2e/**/*.test.ts',
      'test/fuzz/**/*.test.ts',
    ],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The suite starts real loopback servers; two workers keep a 2-core machine responsive.
    maxWorkers: 2,
    env: TEST_ENV,
  },
});
