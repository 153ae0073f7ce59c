import { describe, expect, it } from 'vitest';
import { buildAgentContainerSpec, cacheStatus, osFamily, planAgentImage, type AgentHostFacts } from '../../src/agent/agent-spec.js';
import { containerAction } from '../../src/agent/agent-step.js';
import { isSecretKey, parseEcsConfig, redactEnv } from '../../src/agent/ecs-config.js';

const AL2023 = 'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nVERSION_ID="2023"\n';
const facts = (paths: string[], dirs: string[] = [], osRelease = AL2023): AgentHostFacts => ({
  exists: new Set([...paths, ...dirs]),
  dirs: new Set(dirs),
  osRelease,
});
const build = (over: Partial<Parameters<typeof buildAgentContainerSpec>[0]> = {}) =>
  buildAgentContainerSpec({
    image: 'amazon/amazon-ecs-agent:latest',
    dockerHost: 'unix:///var/run/docker.sock',
    instanceVars: new Map(),
    userVars: new Map([['ECS_CLUSTER', 'prod']]),
    facts: facts([], ['/etc/pki', '/etc/pki/tls/certs']),
    ...over,
  });

describe('parseEcsConfig (ecs-init semantics)', () => {
  it('splits on the first =, keeps values byte-identical, ignores lines without =', () => {
    const { vars, warnings } = parseEcsConfig('/etc/ecs/ecs.config', '\n  ECS_CLUSTER=prod  \nECS_INSTANCE_ATTRIBUTES={"a":"b=c"}\njunk\nECS_X="q"\r\n# ECS_Y=1\n');
    expect([...vars]).toEqual([
      ['ECS_CLUSTER', 'prod'],
      ['ECS_INSTANCE_ATTRIBUTES', '{"a":"b=c"}'],
      ['ECS_X', '"q"'],
    ]);
    expect(warnings).toEqual([
      '/etc/ecs/ecs.config line 4: the value of ECS_X is in quotes; the agent receives the quotes too (as with ecs-init)',
      '/etc/ecs/ecs.config line 5: a comment; ecs-init would have passed it to the agent as a variable, ecs-gvisor skips it',
    ]);
  });

  it('treats secrets as secrets', () => {
    expect(['ECS_ENGINE_AUTH_DATA', 'ECS_ENGINE_AUTH_TYPE', 'MY_PASSWORD', 'GITHUB_TOKEN', 'aws_secret_key'].every(isSecretKey)).toBe(true);
    expect(isSecretKey('ECS_CLUSTER')).toBe(false);
    expect(redactEnv(['ECS_ENGINE_AUTH_DATA=xyz', 'ECS_CLUSTER=prod'])).toEqual(['ECS_ENGINE_AUTH_DATA=[redacted]', 'ECS_CLUSTER=prod']);
  });
});

describe('buildAgentContainerSpec', () => {
  it('always names runc, and keeps ecs-init’s host config', () => {
    const { spec } = build();
    expect(spec.name).toBe('ecs-agent');
    expect(spec.HostConfig).toMatchObject({ Runtime: 'runc', NetworkMode: 'host', UsernsMode: 'host', CapAdd: ['NET_ADMIN', 'SYS_ADMIN'], Init: true });
  });

  it('binds /var/run for the default socket, and a socket elsewhere to where the agent looks', () => {
    expect(build().spec.HostConfig!.Binds).toContain('/var/run:/var/run');
    expect(build({ dockerHost: 'unix:///x/d.sock' }).spec.HostConfig!.Binds).toContain('/x/d.sock:/var/run/docker.sock');
    const custom = build({ dockerHost: 'unix:///x/d.sock', userVars: new Map([['DOCKER_HOST', 'unix:///run/d.sock']]) });
    expect(custom.spec.HostConfig!.Binds).toContain('/x/d.sock:/run/d.sock');
  });

  it('uses /etc/pki on Amazon Linux and /etc/ssl on Debian, with SSL_CERT_DIR', () => {
    const al = build();
    expect(al.spec.HostConfig!.Binds).toContain('/etc/pki:/etc/pki:ro');
    expect(al.spec.Env).toContain('SSL_CERT_DIR=/etc/pki/tls/certs');
    expect(al.spec.Env).toContain('ECS_DETAILED_OS_FAMILY=amzn_2023');
    const deb = build({ facts: facts(['/etc/ssl/certs'], ['/etc/ssl', '/etc/pki'], 'ID=debian\nVERSION_ID="12"\n') });
    expect(deb.spec.HostConfig!.Binds).toContain('/etc/ssl:/etc/ssl:ro');
    expect(deb.spec.Env).toContain('SSL_CERT_DIR=/etc/ssl/certs');
  });

  it('binds managed agents, GPU info and host tools only when present or asked for', () => {
    const none = build({ facts: facts([]) }).spec.HostConfig!.Binds as string[];
    expect(none.filter((b) => /deps|gpu|lsblk|nsenter|modinfo|lib64|cloud/.test(b))).toEqual([]);
    const all = build({
      userVars: new Map([['ECS_ENABLE_GPU_SUPPORT', 'true']]),
      facts: facts(['/usr/bin/lsblk', '/usr/bin/nsenter', '/sbin/modinfo', '/usr/sbin/modinfo', '/var/lib/cloud/data/result.json', '/lib64'], ['/var/lib/ecs/deps', '/var/lib/ecs/deps/execute-command']),
    }).spec.HostConfig!.Binds as string[];
    expect(all).toEqual(
      expect.arrayContaining([
        '/var/lib/ecs/gpu:/var/lib/ecs/gpu',
        '/var/lib/ecs/deps:/managed-agents:ro',
        '/var/lib/ecs/deps/execute-command/config:/managed-agents/execute-command/config',
        '/lib64:/lib64:ro',
        '/usr/bin/lsblk:/usr/bin/lsblk',
        '/usr/bin/nsenter:/usr/bin/nsenter',
        '/var/lib/cloud/data/result.json:/var/lib/cloud/data/result.json:ro',
      ]),
    );
    expect(all.filter((b) => b.includes('modinfo'))).toEqual(['/sbin/modinfo:/sbin/modinfo']); // the first one only
  });

  it('layers env: defaults < instance config < user config', () => {
    const { spec } = build({
      instanceVars: new Map([['ECS_CLUSTER', 'a'], ['ECS_UPDATES_ENABLED', 'false']]),
      userVars: new Map([['ECS_CLUSTER', 'b']]),
    });
    expect(spec.Env).toContain('ECS_CLUSTER=b');
    expect(spec.Env).toContain('ECS_UPDATES_ENABLED=false');
    expect(spec.Env).toContain('ECS_ENABLE_TASK_ENI=true');
  });

  it('takes labels from ECS_AGENT_LABELS and reports bad ones and a missing cluster', () => {
    expect(build({ userVars: new Map([['ECS_AGENT_LABELS', '{"a":"1"}']]) }).spec.Labels).toMatchObject({ a: '1' });
    const bad = build({ userVars: new Map([['ECS_AGENT_LABELS', '{"a":1}']]) });
    expect(bad.spec.Labels!.a).toBeUndefined();
    expect(bad.warnings).toContain('ECS_AGENT_LABELS is not a JSON object of strings; no labels were set (as with ecs-init)');
    expect(bad.warnings).toContain('ECS_CLUSTER is not set; the agent registers in the cluster named "default"');
  });

  it('hashes the spec: same input same hash, any change a new one', () => {
    expect(build().hash).toBe(build().hash);
    expect(build({ userVars: new Map([['ECS_CLUSTER', 'other']]) }).hash).not.toBe(build().hash);
    expect(build().spec.Labels!['ecs-gvisor.spec-hash']).toBe(build().hash);
  });
});

describe('image and container decisions', () => {
  it('follows ecs-init’s cache states', () => {
    expect(cacheStatus('1', true)).toBe('cached');
    expect(cacheStatus('2\n', true)).toBe('reload-needed');
    expect(cacheStatus('2', false)).toBe('uncached');
    expect(cacheStatus(undefined, true)).toBe('uncached');
    expect(planAgentImage(true, 'reload-needed')).toBe('load');
    expect(planAgentImage(true, 'cached')).toBe('use');
    expect(planAgentImage(false, 'cached')).toBe('load');
    expect(planAgentImage(false, 'uncached')).toBe('pull');
  });

  it('keeps, starts, recreates or replaces the container', () => {
    const c = (labels: Record<string, string>, running = true) => ({ id: 'x', name: 'ecs-agent', runtime: 'runc', status: '', running, pid: 1, startedAt: '', finishedAt: '', exitCode: 0, labels });
    expect(containerAction(undefined, 'h')).toBe('create');
    expect(containerAction(c({}), 'h')).toBe('replace-foreign');
    expect(containerAction(c({ 'ecs-gvisor.managed': 'true', 'ecs-gvisor.spec-hash': 'old' }), 'h')).toBe('recreate');
    expect(containerAction(c({ 'ecs-gvisor.managed': 'true', 'ecs-gvisor.spec-hash': 'h' }), 'h')).toBe('keep');
    expect(containerAction(c({ 'ecs-gvisor.managed': 'true', 'ecs-gvisor.spec-hash': 'h' }, false), 'h')).toBe('start');
  });

  it('reads os-release like ecs-init', () => {
    expect(osFamily(AL2023)).toBe('amzn_2023');
    expect(osFamily("ID='ubuntu'\nVERSION_ID=22.04\n")).toBe('ubuntu_22.04');
    expect(osFamily('ID=arch\n')).toBe('linux');
    expect(osFamily(undefined)).toBe('linux');
  });
});
