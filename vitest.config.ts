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
          include: ['test/integration/**/*.test.ts', 'test/faults/**/*.test.ts'],
          // One private dockerd for the run (started here, stopped in teardown).
          globalSetup: ['test/harness/global-setup.ts'],
          // The files share that dockerd and reload it: one file at a time.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        // Simulated ECS instances (systemd, nested dockerd, runsc) in their own private dockerd. Run on
        // their own (`npm run test:e2e`, part of `npm test`): they are slow and load both cores.
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
