/**
 * A full `bootstrap` (ecs-init, runtime, network, agent) and a full `rollback`: the CLI runs in a network
 * namespace of its own (host rules untouched), with a stand-in systemctl for ecs.service, against the real
 * private dockerd.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, dockerClient, liveRuntime, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');
const agentImage = inject('agentImage');
const ORIGINAL = '{\n  "log-driver": "json-file"\n}\n';
let ns: string;
let dir: string;

beforeEach(async () => {
  await resetDocker(d, ORIGINAL);
  ns = `egv-full-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  dir = mkdtempSync('/tmp/egv-full-');
  writeFileSync(`${dir}/unit`, 'active enabled\n');
  writeFileSync(
    `${dir}/systemctl`,
    `#!/bin/sh
for a; do unit=$a; done
[ "$unit" = ecs.service ] || { [ "$1" = show ] && printf 'LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n'; exit 0; }
read active file < ${dir}/unit
case "$1" in
  show) load=loaded; [ "$file" = masked ] && load=masked; printf 'LoadState=%s\\nActiveState=%s\\nUnitFileState=%s\\n' $load $active $file; exit 0 ;;
  stop) active=inactive ;; disable) file=disabled ;; mask) file=masked ;; unmask) file=disabled ;; enable) file=enabled ;; start) active=active ;;
esac
echo "$active $file" > ${dir}/unit
`,
  );
  chmodSync(`${dir}/systemctl`, 0o755);
  writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
});
afterEach(async () => {
  execFileSync('ip', ['netns', 'del', ns]);
  await resetDocker(d, '{}\n');
});

describe('bootstrap (all steps) and rollback (all steps)', () => {
  it('converges the whole host, then gives it back', async () => {
    const env = cliEnv(d, {
      PATH: `${dir}:${process.env.PATH}`,
      ECS_GVISOR_AGENT_IMAGE: agentImage,
      ECS_GVISOR_ECS_CONFIG: `${dir}/ecs.config`,
      ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/none`,
      ECS_GVISOR_AGENT_CACHE_DIR: `${dir}/cache`,
    });
    const r = await runCli(['bootstrap'], env, 120_000, ns);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readFileSync(`${dir}/unit`, 'utf8')).toBe('inactive masked\n');
    expect((await liveRuntime(d)).defaultRuntime).toBe('runsc');
    const agent = await dockerClient(d).getContainer('ecs-agent').inspect();
    expect(agent.HostConfig.Runtime).toBe('runc');
    expect(agent.State.Running).toBe(true);
    expect(execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' })).toContain('ecs-gvisor: task IAM role credentials');

    const rb = await runCli(['rollback'], env, 120_000, ns);
    expect(rb.code).toBe(0);
    expect(readFileSync(`${dir}/unit`, 'utf8')).toBe('active enabled\n');
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(ORIGINAL);
    expect((await liveRuntime(d)).defaultRuntime).toBe('runc');
    await expect(dockerClient(d).getContainer('ecs-agent').inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' })).not.toContain('ecs-gvisor');
  });
});
