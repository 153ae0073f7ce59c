import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      // The CDK app (its own package in infra/, installed by .ci/run): synthesized templates, no AWS.
      { test: { name: 'infra', include: ['infra/test/**/*.test.ts'], testTimeout: 60_000 } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // One private dockerd for the run (started here, stopped in teardown).
          globalSetup: ['test/harness/global-setup.ts'],
          // The files share that dockerd and reload it: one file at a time.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
