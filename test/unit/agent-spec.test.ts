import { describe, expect, it } from 'vitest';
import { type AgentHostFacts, buildAgentContainerSpec, cacheStatus, osFamily, planAgentImage } from '../../src/agent/agent-spec.js';
import { containerAction } from '../../src/agent/agent-step.js';
import { parseEcsConfig, redactEnv } from '../../src/agent/ecs-config.js';
import { isSecretKey } from '../../src/redact.js';

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
    const { vars, warnings } = parseEcsConfig(
      '/etc/ecs/ecs.config',
      '\n  ECS_CLUSTER=prod  \nECS_INSTANCE_ATTRIBUTES={"a":"b=c"}\njunk\nECS_X="q"\r\n# ECS_Y=1\n',
    );
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
    expect(spec.HostConfig).toMatchObject({
      Runtime: 'runc',
      NetworkMode: 'host',
      UsernsMode: 'host',
      CapAdd: ['NET_ADMIN', 'SYS_ADMIN'],
      Init: true,
    });
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
      facts: facts(
        ['/usr/bin/lsblk', '/usr/bin/nsenter', '/sbin/modinfo', '/usr/sbin/modinfo', '/var/lib/cloud/data/result.json', '/lib64'],
        ['/var/lib/ecs/deps', '/var/lib/ecs/deps/execute-command'],
      ),
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
      instanceVars: new Map([
        ['ECS_CLUSTER', 'a'],
        ['ECS_UPDATES_ENABLED', 'false'],
      ]),
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

  it('hashes the spec and the image ID: same input same hash, any change a new one', () => {
    expect(build().hash).toBe(build().hash);
    expect(build({ userVars: new Map([['ECS_CLUSTER', 'other']]) }).hash).not.toBe(build().hash);
    expect(build().spec.Labels!['ecs-gvisor.spec-hash']).toBe(build().hash);
    // The same name on a new image (pulled, re-tagged, loaded from a new AMI cache) is a new agent.
    const a = build({ imageId: 'sha256:aaa' });
    const b = build({ imageId: 'sha256:bbb' });
    expect(a.hash).not.toBe(b.hash);
    expect(a.spec.Image).toBe('amazon/amazon-ecs-agent:latest'); // the name, as ecs-init creates it
    expect(b.spec.Labels!['ecs-gvisor.image-id']).toBe('sha256:bbb');
  });
});

/**
 * ecs-init's own switches (v1.101.2 `createHostConfig`, `AgentDockerLogDriverConfiguration`,
 * `getContainerConfig`): read from its process environment, i.e. /etc/ecs/ecs.config through systemd's
 * EnvironmentFile, never from /var/lib/ecs/ecs.config.
 */
describe('buildAgentContainerSpec: ecs-init parity settings', () => {
  const user = (...kv: Array<[string, string]>) => new Map([['ECS_CLUSTER', 'prod'], ...kv]);
  const hc = (over: Partial<Parameters<typeof buildAgentContainerSpec>[0]>) => build(over).spec.HostConfig as Record<string, unknown>;

  it('ECS_AGENT_RUN_PRIVILEGED=true (exactly) makes the agent privileged', () => {
    expect(hc({ userVars: user(['ECS_AGENT_RUN_PRIVILEGED', 'true']) }).Privileged).toBe(true);
    expect(hc({ userVars: user(['ECS_AGENT_RUN_PRIVILEGED', '"true"']) }).Privileged).toBe(true); // systemd unquotes
    expect(hc({ userVars: user(['ECS_AGENT_RUN_PRIVILEGED', 'TRUE']) }).Privileged).toBeUndefined(); // ecs-init compares to "true"
    expect(hc({}).Privileged).toBeUndefined();
    // Only ecs-init's process environment counts: the instance file never reaches it.
    expect(hc({ instanceVars: new Map([['ECS_AGENT_RUN_PRIVILEGED', 'true']]) }).Privileged).toBeUndefined();
  });

  it('ECS_AGENT_PID_NAMESPACE_HOST follows Go’s ParseBool', () => {
    for (const v of ['1', 't', 'T', 'TRUE', 'true', 'True'])
      expect(hc({ userVars: user(['ECS_AGENT_PID_NAMESPACE_HOST', v]) }).PidMode).toBe('host');
    for (const v of ['yes', '0', 'false', '']) expect(hc({ userVars: user(['ECS_AGENT_PID_NAMESPACE_HOST', v]) }).PidMode).toBeUndefined();
  });

  it('ECS_LOG_DRIVER / ECS_LOG_OPTS / ECS_INIT_DOCKER_LOG_FILE_*: the agent container’s log config', () => {
    expect(hc({}).LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '16m', 'max-file': '4' } });
    expect(hc({ userVars: user(['ECS_INIT_DOCKER_LOG_FILE_SIZE', '32m'], ['ECS_INIT_DOCKER_LOG_FILE_NUM', '9']) }).LogConfig).toEqual({
      Type: 'json-file',
      Config: { 'max-size': '32m', 'max-file': '9' },
    });
    expect(
      hc({ userVars: user(['ECS_LOG_DRIVER', 'awslogs'], ['ECS_LOG_OPTS', '{"awslogs-group":"ecs","awslogs-region":"eu-west-1"}']) })
        .LogConfig,
    ).toEqual({
      Type: 'awslogs',
      Config: { 'awslogs-group': 'ecs', 'awslogs-region': 'eu-west-1' },
    });
    // Options given for json-file replace the defaults, as in ecs-init.
    expect(hc({ userVars: user(['ECS_LOG_OPTS', '{"max-size":"1m"}']) }).LogConfig).toEqual({
      Type: 'json-file',
      Config: { 'max-size': '1m' },
    });
    // An unsupported driver falls back to json-file with default options, and says so.
    const bad = build({ userVars: user(['ECS_LOG_DRIVER', 'local'], ['ECS_LOG_OPTS', '{"a":"b"}']) });
    expect(bad.spec.HostConfig!.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '16m', 'max-file': '4' } });
    expect(bad.warnings.some((w) => w.includes('ECS_LOG_DRIVER=local'))).toBe(true);
    const badOpts = build({ userVars: user(['ECS_LOG_DRIVER', 'syslog'], ['ECS_LOG_OPTS', '{"a":1}']) });
    expect(badOpts.spec.HostConfig!.LogConfig).toEqual({ Type: 'syslog', Config: {} });
    expect(badOpts.warnings.some((w) => w.includes('ECS_LOG_OPTS'))).toBe(true);
  });

  it('sets ecs-init’s AppArmor profile on AppArmor hosts where it is loaded, and says so when it is not', () => {
    const loaded = new Set(['docker-default', 'ecs-agent-default', 'custom']);
    const aa = (apparmorProfiles: ReadonlySet<string> | undefined, extra: Array<[string, string]> = []) =>
      build({ userVars: user(...extra), facts: { ...facts([], ['/etc/pki']), apparmorProfiles } });
    expect(aa(undefined).spec.HostConfig!.SecurityOpt).toBeUndefined();
    expect(aa(loaded).spec.HostConfig!.SecurityOpt).toEqual(['apparmor:ecs-agent-default']);
    expect(aa(loaded, [['ECS_AGENT_APPARMOR_PROFILE', 'custom']]).spec.HostConfig!.SecurityOpt).toEqual(['apparmor:custom']);
    // Not loaded (ecs-init's pre-start never ran): Docker would refuse to start the agent with it.
    const missing = aa(new Set(['docker-default']));
    expect(missing.spec.HostConfig!.SecurityOpt).toBeUndefined();
    expect(missing.warnings.some((w) => w.includes('AppArmor profile ecs-agent-default') && w.includes('not loaded'))).toBe(true);
  });

  it('ECS_EBSTA_SUPPORTED: true with the EBS mount directory, false without, whatever the files say', () => {
    expect(build({ facts: facts([], ['/mnt/ecs/ebs']) }).spec.Env).toContain('ECS_EBSTA_SUPPORTED=true');
    expect(build({ facts: facts([]) }).spec.Env).toContain('ECS_EBSTA_SUPPORTED=false');
    expect(build({ facts: facts([]), userVars: user(['ECS_EBSTA_SUPPORTED', 'true']) }).spec.Env).toContain('ECS_EBSTA_SUPPORTED=false');
    expect(build({ facts: facts([], ['/mnt/ecs/ebs']), userVars: user(['ECS_EBSTA_SUPPORTED', 'false']) }).spec.Env).toContain(
      'ECS_EBSTA_SUPPORTED=false',
    );
  });

  it('passes ECS_AGENT_LABELS through (empty by default), as ecs-init does', () => {
    expect(build().spec.Env).toContain('ECS_AGENT_LABELS=');
  });

  it('refuses ECS_EXTERNAL=true (ECS Anywhere) with one sentence naming the file', () => {
    expect(() => build({ userVars: user(['ECS_EXTERNAL', 'true']), userFile: '/etc/ecs/ecs.config' })).toThrow(
      /^\/etc\/ecs\/ecs.config sets ECS_EXTERNAL=true \(ECS Anywhere\), but ecs-gvisor runs the agent only on EC2 container instances/,
    );
    expect(() => build({ userVars: user(['ECS_EXTERNAL', 'false']) })).not.toThrow();
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
    const c = (labels: Record<string, string>, running = true) => ({
      id: 'x',
      name: 'ecs-agent',
      runtime: 'runc',
      status: '',
      running,
      pid: 1,
      startedAt: '',
      finishedAt: '',
      exitCode: 0,
      labels,
    });
    const want = { hash: 'h', spec: { name: 'ecs-agent', Image: 'agent', Labels: { 'ecs-gvisor.image-id': 'sha256:new' } } };
    const ours = { 'ecs-gvisor.managed': 'true', 'ecs-gvisor.spec-hash': 'h' };
    expect(containerAction(undefined, want)).toBe('create');
    expect(containerAction(c({}), want)).toBe('replace-foreign');
    expect(containerAction(c({ ...ours, 'ecs-gvisor.spec-hash': 'old' }), want)).toBe('recreate');
    expect(containerAction(c(ours), want)).toBe('keep');
    expect(containerAction(c(ours, false), want)).toBe('start');
    // Docker says the container runs another image than the name points at now (a re-tag): recreate,
    // whatever its labels claim.
    expect(containerAction({ ...c(ours), imageId: 'sha256:old' }, want)).toBe('recreate');
    expect(containerAction({ ...c(ours), imageId: 'sha256:new' }, want)).toBe('keep');
    // Once an ID is recorded, our labels on another container make it no agent of ours.
    expect(containerAction(c(ours), want, 'x')).toBe('keep');
    expect(containerAction(c(ours), want, 'the-one-we-created')).toBe('replace-foreign');
  });

  it('reads os-release like ecs-init', () => {
    expect(osFamily(AL2023)).toBe('amzn_2023');
    expect(osFamily("ID='ubuntu'\nVERSION_ID=22.04\n")).toBe('ubuntu_22.04');
    expect(osFamily('ID=arch\n')).toBe('linux');
    expect(osFamily(undefined)).toBe('linux');
  });
});
