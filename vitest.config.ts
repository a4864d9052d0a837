// Test projects: pure unit tests (no privileges) and integration tests in a lab of namespaces (root).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Labs are real namespaces; one file at a time keeps the 2-core machine honest.
          fileParallelism: false,
        },
      },
    ],
  },
});
