/**
 * The command line as an operator meets it, through the bundle: usage with no arguments, each command's
 * help, --help listing the configuration keys of docs/configuration.md, an unknown ECS_GVISOR_* variable
 * warned about (and refused by check-config), check-config against the private dockerd, and plan without
 * Docker showing what it can.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, resetDocker } from '../harness/docker-state.js';

const d = inject('dockerd');
const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
/** A Docker socket nothing listens on. */
const NO_DOCKER = { ECS_GVISOR_DOCKER_HOST: 'unix:///nonexistent/docker.sock' };

describe('the command line', () => {
  it('no arguments: the usage on stderr, exit 2; --help: the usage and every configuration key; a command’s help: its own', async () => {
    const none = await runCli([], {});
    expect(none).toMatchObject({ code: 2, stdout: '' });
    expect(none.stderr).toMatch(/^Usage: ecs-gvisor <command> \[options\]/);
    const help = await runCli(['--help'], {});
    expect(help.code).toBe(0);
    for (const [, key] of doc.matchAll(/^\| `(ECS_GVISOR_[A-Z0-9_]+)`/gm)) expect(help.stdout).toContain(`  ${key} (default `);
    for (const argv of [
      ['status', '--help'],
      ['help', 'status'],
    ]) {
      const s = await runCli(argv, {});
      expect(s.code).toBe(0);
      expect(s.stdout).toMatch(/^Usage: ecs-gvisor status \[--json\]\n/);
      expect(s.stdout).not.toContain('ECS_GVISOR_DOCKER_HOST');
    }
    expect((await runCli(['check-config', '-h'], {})).stdout).toMatch(/^Usage: ecs-gvisor check-config \[--json\]/);
  });

  it('an unknown ECS_GVISOR_ variable is a warning naming the key it resembles; check-config refuses it with every other problem', async () => {
    const env = cliEnv(d, { ...NO_DOCKER, ECS_GVISOR_AUDIT_INTERVAL_SECOND: '30' });
    const plan = await runCli(['plan', '--only', 'ecs-init'], env);
    expect(plan.stderr).toContain(
      'ecs-gvisor: warning: environment: ECS_GVISOR_AUDIT_INTERVAL_SECOND is no ecs-gvisor setting (did you mean ECS_GVISOR_AUDIT_INTERVAL_SECONDS?); it is ignored.',
    );
    expect(plan.stdout).toContain('ecs-init:');
    // Every problem at once: the file's unknown key and bad value, the environment's bad value and unknown key.
    const dir = mkdtempSync('/tmp/egv-check-');
    writeFileSync(`${dir}/ecs-gvisor.config`, 'ECS_GVISOR_RUNSC_PAHT=/usr/bin/runsc\nECS_GVISOR_AUDIT_ACTION=kill\n');
    const check = await runCli(['check-config'], { ...env, ECS_GVISOR_CONFIG: `${dir}/ecs-gvisor.config`, ECS_GVISOR_LOG_LEVEL: 'loud' });
    expect(check.code).toBe(2);
    expect(check.stdout).toContain('4 problem(s):');
    expect(check.stdout).toContain(
      `${dir}/ecs-gvisor.config line 1: unknown key ECS_GVISOR_RUNSC_PAHT (did you mean ECS_GVISOR_RUNSC_PATH?)`,
    );
    expect(check.stdout).toContain(`${dir}/ecs-gvisor.config: ECS_GVISOR_AUDIT_ACTION="kill" must be report or stop.`);
    expect(check.stdout).toMatch(/environment: ECS_GVISOR_LOG_LEVEL="loud" /);
    expect(check.stdout).toContain(
      'environment: ECS_GVISOR_AUDIT_INTERVAL_SECOND is no ecs-gvisor setting (did you mean ECS_GVISOR_AUDIT_INTERVAL_SECONDS?).',
    );
  });

  it('check-config on a sound host: exit 0 with Docker’s version, cgroup driver and runtimes; --json says the same', async () => {
    await resetDocker(d, '{}\n'); // whatever an earlier file left: Docker as a fresh instance has it
    const env = cliEnv(d);
    const text = await runCli(['check-config'], env);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^docker: \d+\.\d+\.\d+.*, cgroup v[12] \((cgroupfs|systemd) driver\), default runtime runc, runtimes .*runc/m,
    );
    expect(text.stdout).toMatch(/^runsc: .* \(version /m);
    expect(text.stdout).toContain('OK: no problem found');
    const json = JSON.parse((await runCli(['check-config', '--json'], env)).stdout) as {
      ok: boolean;
      host: { docker: { runtimes: string[] } };
    };
    expect(json).toMatchObject({ ok: true, problems: [] });
    expect(json.host.docker.runtimes).toContain('runc');
    // Docker gone: a problem, exit 2.
    const down = await runCli(['check-config'], { ...env, ...NO_DOCKER });
    expect(down.code).toBe(2);
    expect(down.stdout).toMatch(/1 problem\(s\):\n {2}- .*unix:\/\/\/nonexistent\/docker\.sock/);
  });

  it('plan without Docker shows ecs-init and the network, names the runtime and the agent it could not read, exit 4; --json too', async () => {
    const env = cliEnv(d, NO_DOCKER);
    const p = await runCli(['plan'], env);
    expect(p.code).toBe(4);
    expect(p.stdout).toContain('ecs-init:');
    expect(p.stdout).toContain('network:');
    expect(p.stdout).toMatch(/^runtime: could not be read: .*nonexistent\/docker\.sock/m);
    expect(p.stdout).toMatch(/^agent: could not be read: /m);
    // And on stderr, one line a problem, as any failure is said.
    expect(p.stderr).toMatch(/^ecs-gvisor: Docker at unix:\/\/\/nonexistent\/docker\.sock cannot be reached to /m);
    const j = await runCli(['plan', '--json'], env);
    expect(j.code).toBe(4);
    const report = JSON.parse(j.stdout) as { network?: { rules: unknown[] }; runtime?: unknown; unreadable: Array<{ step: string }> };
    expect(report.network?.rules.length).toBeGreaterThan(0);
    expect(report.runtime).toBeUndefined();
    expect(report.unreadable.map((u) => u.step)).toEqual(['runtime', 'agent']);
  });
});
