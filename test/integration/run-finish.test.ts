/**
 * What `run` leaves for after READY: the network modes' probes, ecs-init's unit-file changes (for the next
 * boot) and the removal of the proof's probes. Through serve with the ecs-init, runtime and agent steps, against the real private
 * dockerd with runsc and the stand-in agent, a stand-in systemctl for ecs.service that records what Docker
 * ran at each call, and fake AWS endpoints on 127.0.0.1.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { ExecCommands } from '../../src/adapters/exec-commands.js';
import { Systemctl } from '../../src/adapters/systemctl.js';
import { buildApp } from '../../src/cli/composition.js';
import { serve } from '../../src/cli/run.js';
import { parseConfig } from '../../src/config.js';
import { EcsInitStep } from '../../src/ecs-init/ecs-init-step.js';
import { dockerClient } from '../harness/docker-state.js';
import { ARN } from '../harness/fake-aws.js';
import { ACCEPT_STAND_IN_LISTENER, registerAgent, until, watchEnv } from '../harness/watch-fixture.js';
import { useWatchHost } from '../harness/watch-host.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const docker = dockerClient(d);
const log = pino({ level: process.env.EGV_TEST_LOG ?? 'silent' });
const host = useWatchHost(
  d,
  '/tmp/egv-run-finish-',
  { '/latest/meta-data/instance-id': 'i-0123456789abcdef0', '/latest/meta-data/placement/region': 'us-east-1' },
  { runMayFail: true },
);

/**
 * ecs.service, running and enabled, behind a stand-in systemctl: each call is recorded with whether the
 * agent container runs at that moment. `maskFails`: mask exits 1 as systemctl does when refused.
 */
function standInSystemctl(maskFails: boolean): { path: string; calls: () => string[]; state: () => string } {
  const dir = mkdtempSync('/tmp/egv-systemctl-');
  writeFileSync(`${dir}/state`, 'ACTIVE=active\nFILE=enabled\n');
  writeFileSync(
    `${dir}/systemctl`,
    `#!/bin/sh
for a; do unit=$a; done
. ${dir}/state
running=$(docker -H ${d.host} inspect -f '{{.State.Running}}' ecs-agent 2>/dev/null | tr -d '\n')
echo "$1 agent-running=\${running:-none}" >> ${dir}/calls
case "$1" in
  show) printf 'LoadState=loaded\\nActiveState=%s\\nUnitFileState=%s\\nFragmentPath=/usr/lib/systemd/system/ecs.service\\n' "$ACTIVE" "$FILE"; exit 0 ;;
  stop) ACTIVE=inactive ;;
  disable) FILE=disabled ;;
  mask) ${maskFails ? 'echo "Failed to mask unit: Access denied" >&2; exit 1' : 'FILE=masked'} ;;
esac
printf 'ACTIVE=%s\\nFILE=%s\\n' "$ACTIVE" "$FILE" > ${dir}/state
`,
  );
  chmodSync(`${dir}/systemctl`, 0o755);
  return {
    path: `${dir}/systemctl`,
    calls: () => (existsSync(`${dir}/calls`) ? readFileSync(`${dir}/calls`, 'utf8').trim().split('\n') : []),
    state: () => readFileSync(`${dir}/state`, 'utf8'),
  };
}

/**
 * `run` as main runs it, for the ecs-init, runtime and agent steps (the network step touches the host);
 * returns its state directory.
 */
function start(systemctl: string, extra: Record<string, string> = {}): string {
  const env = watchEnv(d, { dir: host.dir, agentImage, intro: host.intro, imdsUrl: host.aws.imds.url }, extra);
  const app = buildApp(parseConfig({ fileText: undefined, filePath: env.ECS_GVISOR_CONFIG!, env }), log, {}, ACCEPT_STAND_IN_LISTENER);
  app.ecsInit = new EcsInitStep(
    { services: new Systemctl(new ExecCommands(), systemctl), log: log.child({ component: 'ecs-init' }) },
    { unit: 'ecs.service', mask: true },
  );
  host.running = serve(app, ['ecs-init', 'runtime', 'agent'], log, host.ac.signal);
  return env.ECS_GVISOR_STATE_DIR!;
}

const probes = async () => (await docker.listContainers({ all: true, filters: { label: ['ecs-gvisor.probe'] } })).length;

/** The names of the containers Docker started since `since` (ms since the epoch), in Docker's order. */
async function startedSince(since: number): Promise<string[]> {
  const stream = await docker.getEvents({
    since: (since / 1000).toFixed(3) as unknown as number, // Docker takes seconds with a fraction
    until: Math.ceil(Date.now() / 1000) + 1,
    filters: { type: ['container'], event: ['start'] },
  });
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { Actor: { Attributes: { name: string } } }).Actor.Attributes.name);
}

describe('run: what waits for READY', () => {
  it('ecs-init is stopped before anything changes, disabled and masked once the agent runs; the probes are removed', async () => {
    const systemctl = standInSystemctl(false);
    start(systemctl.path);
    await until('ecs-init masked', () => systemctl.calls().includes('mask agent-running=true'), 60_000);
    expect(systemctl.calls()).toEqual([
      'show agent-running=none',
      'stop agent-running=none',
      'disable agent-running=true',
      'mask agent-running=true',
    ]);
    expect(systemctl.state()).toBe('ACTIVE=inactive\nFILE=masked\n');
    await until('the probes removed', async () => (await probes()) === 0, 60_000);
    // Still watching: nothing failed.
    expect(await Promise.race([host.running, new Promise((r) => setTimeout(() => r('running'), 500))])).toBe('running');
  });

  it('a unit-file change that fails after READY stops run with its error; the agent keeps running', async () => {
    const systemctl = standInSystemctl(true);
    start(systemctl.path);
    await expect(host.running).rejects.toThrow(/systemctl mask .*ecs\.service failed \(exit 1\): Failed to mask unit: Access denied/);
    expect(systemctl.calls().at(-1)).toBe('mask agent-running=true');
    expect((await docker.getContainer('ecs-agent').inspect()).State.Running).toBe(true);
    expect(await probes()).toBe(0);
  });

  it('the network modes are proven after the agent started: in runtime.json, status and the ECS attributes', async () => {
    const since = Date.now();
    const stateDir = start(standInSystemctl(false).path);
    await registerAgent(host.aws.ecs, host.intro);
    const attrs = () => host.aws.ecs.instances.get(ARN)?.attributes ?? {};
    await until('the network modes published', () => attrs()['ecs-gvisor.network.host'] === 'verified', 60_000);
    expect(attrs()).toMatchObject({ 'ecs-gvisor.sandbox': 'verified' });
    // Debian's runsc runs with --network=none here: a bridge (or awsvpc) container would have only
    // loopback, so neither mode is published; host mode (passthrough, the entry point's flag last) is.
    expect(attrs()['ecs-gvisor.network.bridge']).toBeUndefined();
    expect(attrs()['ecs-gvisor.network.awsvpc']).toBeUndefined();
    // The proof's own probe alone before the agent; the modes' probes (a joined namespace, the host's) after.
    const started = await startedSince(since);
    const agentAt = started.indexOf('ecs-agent');
    expect(agentAt).toBeGreaterThan(0);
    expect(started.slice(0, agentAt)).toEqual([expect.stringMatching(/^ecs-gvisor-probe-/)]);
    expect(started.slice(agentAt + 1).filter((n) => n.startsWith('ecs-gvisor-probe-'))).toHaveLength(2);
    const saved = JSON.parse(readFileSync(`${stateDir}/runtime.json`, 'utf8'));
    expect(saved).toMatchObject({
      verified: true,
      evidence: { networks: { own: { proven: false, reason: expect.stringMatching(/--network=none/) }, joined: { proven: true } } },
    });
    expect(Object.keys(saved.evidence.networks).sort()).toEqual(['host', 'joined', 'own']);
    await until('the probes removed', async () => (await probes()) === 0, 60_000);
  });

  it('a step failing after the proof stops run at once: the modes are not proven, the proof’s probe is removed', async () => {
    const since = Date.now();
    // An agent image nowhere: not in Docker, not cached, and its registry (loopback, port 1) refuses at once.
    const stateDir = start(standInSystemctl(false).path, {
      ECS_GVISOR_AGENT_IMAGE: '127.0.0.1:1/nowhere/ecs-agent:latest',
      ECS_GVISOR_AGENT_PULL_RETRIES: '0',
    });
    await expect(host.running).rejects.toThrow(/The agent image 127\.0\.0\.1:1\/nowhere\/ecs-agent:latest is not in Docker/);
    // The proof's probe, and no mode's: Docker started nothing else.
    expect(await startedSince(since)).toEqual([expect.stringMatching(/^ecs-gvisor-probe-/)]);
    expect(await probes()).toBe(0);
    const saved = JSON.parse(readFileSync(`${stateDir}/runtime.json`, 'utf8'));
    expect(saved).toMatchObject({ verified: true });
    expect(saved.evidence.networks).toBeUndefined();
  });
});
