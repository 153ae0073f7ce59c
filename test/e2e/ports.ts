import type { Call, FakeInstance } from '../harness/fake-aws.js';

/** What the simulated instance's fakes listen on (its own loopback) and what they keep. */
export const E2E_PORTS = { control: 4100, ecs: 4101, autoScaling: 4102, ec2: 4103, imds: 4104 } as const;

/** The first boot's world: IMDS paths, the group and its pending lifecycle actions. */
export interface FakesSeed {
  instanceId: string;
  group: string;
  imds: Record<string, string>;
  /** Hooks with an action pending for this instance when it boots. */
  pend: string[];
}

export interface FakesState {
  seed: FakesSeed;
  ecs: {
    instances: Record<string, FakeInstance>;
    calls: Call[];
  };
  autoScaling: {
    actions: Record<string, { result?: string; heartbeats: number }>;
    calls: Array<{ params: Record<string, string>; Action: string; at: number; outcome: string }>;
  };
  imds: { paths: Record<string, string>; requests: number };
  /** EC2 DescribeTags calls (how the instance learns its Auto Scaling group when not configured). */
  ec2: { calls: Array<Record<string, string>> };
}
