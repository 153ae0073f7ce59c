/** The vitest hooks the watch and lifecycle test files share (apart from watch-fixture.ts, which benches bundle). */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { resetDocker } from './docker-state.js';
import { FakeIntrospection } from './fake-aws.js';
import type { DockerdInfo } from './private-dockerd.js';
import { agentHostDir, type FakeAws, startFakeAws } from './watch-fixture.js';

/** What a watch-level test file has: the fakes for the file; a clean host for each test. */
export interface WatchHost {
  aws: FakeAws;
  dir: string;
  intro: FakeIntrospection;
  ac: AbortController;
  /** The test's `run` or watch: aborted and awaited after the test. */
  running?: Promise<void>;
}

/**
 * Register the hooks the watch and lifecycle tests share: the fake endpoints for the file, and for each
 * test a reset Docker, a fresh host directory, an introspection endpoint, IMDS answering `imdsPaths`, and
 * an abort controller for what it starts. `runMayFail`: a test that expects `run` to fail asserts that
 * itself, so the hook only waits for it.
 */
export function useWatchHost(
  d: DockerdInfo,
  prefix: string,
  imdsPaths: Record<string, string>,
  o: { runMayFail?: boolean } = {},
): WatchHost {
  const host = {} as WatchHost;
  beforeAll(async () => {
    host.aws = await startFakeAws();
  });
  afterAll(async () => {
    await host.aws.stop();
  });
  beforeEach(async () => {
    await resetDocker(d, '{}\n');
    host.dir = agentHostDir(prefix);
    host.intro = await new FakeIntrospection().reserve();
    host.aws.reset();
    for (const [path, value] of Object.entries(imdsPaths)) host.aws.imds.paths.set(path, value);
    host.ac = new AbortController();
  });
  afterEach(async () => {
    host.ac.abort();
    await (o.runMayFail ? host.running?.catch(() => undefined) : host.running);
    host.running = undefined;
    await host.intro.stop();
  });
  return host;
}
