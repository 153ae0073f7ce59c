/** What ECS answers about a container instance, and an instance's ECS budget, as the unit tests use them. */
import type { EcsBudget } from '../../src/aws/budget.js';
import type { ContainerInstanceView } from '../../src/ports.js';

export const TEST_CI_ARN = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc';

/** An ACTIVE, connected, healthy container instance, with `o` over it. */
export const containerInstanceView = (o: Partial<ContainerInstanceView> = {}): ContainerInstanceView => ({
  arn: TEST_CI_ARN,
  status: 'ACTIVE',
  agentConnected: true,
  healthStatus: 'OK',
  runningTasksCount: 0,
  pendingTasksCount: 0,
  attributes: {},
  ...o,
});

/** The defaults: 12 polls an hour without local evidence, a 12 h heartbeat with it, a 30 s grace. */
export const testBudget: EcsBudget = {
  callsPerHour: 12,
  maxCallsPerHour: 60,
  alertPollMs: 60_000,
  heartbeatMs: 12 * 3_600_000,
  acsGraceMs: 30_000,
  firstPollSpreadMs: 10_000,
};
