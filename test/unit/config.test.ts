import { describe, expect, it } from 'vitest';
import { BUILTIN_PROBE_IMAGE, parseConfig } from '../../src/config.js';
import { EcsGvisorError } from '../../src/errors.js';

const FILE = '/etc/ecs/ecs-gvisor.config';
const parse = (fileText: string | undefined, env: Record<string, string> = {}) => parseConfig({ fileText, filePath: FILE, env });

describe('parseConfig', () => {
  it('has the contract defaults', () => {
    const c = parse(undefined);
    expect(c).toMatchObject({
      DOCKER_HOST: 'unix:///var/run/docker.sock',
      DAEMON_JSON: '/etc/docker/daemon.json',
      DOCKER_PIDFILE: '/var/run/docker.pid',
      RUNTIME_NAME: 'runsc',
      RUNSC_PATH: '/usr/local/bin/runsc',
      RUNSC_ARGS: [],
      PROBE_IMAGE: BUILTIN_PROBE_IMAGE,
      STATE_DIR: '/var/lib/ecs-gvisor',
      ECS_CONFIG: '/etc/ecs/ecs.config',
      ECS_INIT_UNIT: 'ecs.service',
      AGENT_IMAGE: 'amazon/amazon-ecs-agent:latest',
      CONFIG_FILE_FOUND: false,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads KEY=VALUE lines, skips comments, and lets the environment win', () => {
    const c = parse('# ours\nECS_GVISOR_RUNSC_ARGS=--network=host  --platform=systrap\n\nECS_GVISOR_RUNTIME_NAME=gvisor\n', {
      ECS_GVISOR_RUNTIME_NAME: 'runsc',
      OTHER: 'x',
    });
    expect(c.RUNSC_ARGS).toEqual(['--network=host', '--platform=systrap']);
    expect(c.RUNTIME_NAME).toBe('runsc');
    expect(c.CONFIG_FILE_FOUND).toBe(true);
  });

  it.each([
    ['ECS_GVISOR_RUNSC_PATH=runsc\n', {}, `${FILE}: ECS_GVISOR_RUNSC_PATH="runsc" must be an absolute path.`],
    [
      'ECS_GVISOR_PROBE_IMAGE=busybox@sha256:1234\n',
      {},
      `${FILE}: ECS_GVISOR_PROBE_IMAGE="busybox@sha256:1234" must be an image reference (name[:tag][@sha256:<64 hex digits>]).`,
    ],
    [
      '',
      { ECS_GVISOR_AGENT_IMAGE: 'Amazon/ECS-Agent:latest' },
      'environment: ECS_GVISOR_AGENT_IMAGE="Amazon/ECS-Agent:latest" must be an image reference (name[:tag][@sha256:<64 hex digits>]).',
    ],
    [
      // The file's value has a space (fine in KEY=VALUE); the runtime entry point writes the path unquoted.
      'ECS_GVISOR_RUNSC_PATH=/opt/my runsc/runsc\n',
      {},
      `${FILE}: ECS_GVISOR_RUNSC_PATH="/opt/my runsc/runsc" has characters the runtime entry point cannot use (letters, digits and _./:@%+=,- only).`,
    ],
    [
      '',
      { ECS_GVISOR_RUNSC_PATH: '/usr/bin/run$c' },
      'environment: ECS_GVISOR_RUNSC_PATH="/usr/bin/run$c" has characters the runtime entry point cannot use (letters, digits and _./:@%+=,- only).',
    ],
    [
      '',
      { ECS_GVISOR_RUNTIME_NAME: 'runc' },
      'environment: ECS_GVISOR_RUNTIME_NAME="runc" must not name one of Docker’s built-in runtimes.',
    ],
    ['ECS_GVISOR_REPLACE_DEFAULT_RUNTIME=maybe\n', {}, `${FILE}: ECS_GVISOR_REPLACE_DEFAULT_RUNTIME="maybe" must be true or false.`],
    [
      'ECS_GVISOR_DOCKER_HOST=/var/run/docker.sock\n',
      {},
      `${FILE}: ECS_GVISOR_DOCKER_HOST="/var/run/docker.sock" must be unix:///path or tcp://host:port.`,
    ],
    ['ECS_GVISOR_RUNSC_ARGS=network=host\n', {}, `${FILE}: ECS_GVISOR_RUNSC_ARGS="network=host" must be flags that each start with "--".`],
    ['ECS_GVISOR_RUNSC_SHA512=abc\n', {}, `${FILE}: ECS_GVISOR_RUNSC_SHA512="abc" must be 128 hexadecimal digits.`],
    [
      'ECS_GVISOR_RUNSC_SOURCE=http://mirror.internal/runsc\n',
      {},
      `${FILE}: ECS_GVISOR_RUNSC_SOURCE="http://mirror.internal/runsc" is plain http:// and needs ECS_GVISOR_RUNSC_SHA512 (a checksum from the same server proves nothing).`,
    ],
    ['ECS_GVISOR_PROBE_TIMEOUT_SECONDS=0\n', {}, `${FILE}: ECS_GVISOR_PROBE_TIMEOUT_SECONDS="0" must be at least 1.`],
    [
      'ECS_GVISOR_RUNSC_PAHT=/x\n',
      {},
      `${FILE} line 1: unknown key ECS_GVISOR_RUNSC_PAHT (did you mean ECS_GVISOR_RUNSC_PATH?) (keys start with ECS_GVISOR_; see docs/configuration.md).`,
    ],
    ['\njust words\n', {}, `${FILE} line 2: "just words" is not a KEY=VALUE line.`],
    // One grammar with systemd's EnvironmentFile=: what the two would read differently is refused.
    [
      '; ECS_GVISOR_AUDIT_ACTION=stop\n',
      {},
      `${FILE} line 1: "; ECS_GVISOR_AUDIT_ACTION=stop" is a ";" comment, which systemd skips and ecs-gvisor does not; use "#".`,
    ],
    [
      'ECS_GVISOR_RUNSC_ARGS="--network=host"\n',
      {},
      `${FILE} line 1: ECS_GVISOR_RUNSC_ARGS="--network=host" has quotes or a backslash, which systemd removes and ecs-gvisor keeps; write the value bare (spaces are fine).`,
    ],
    [
      "ECS_GVISOR_AUDIT_ACTION='stop'\n",
      {},
      `${FILE} line 1: ECS_GVISOR_AUDIT_ACTION='stop' has quotes or a backslash, which systemd removes and ecs-gvisor keeps; write the value bare (spaces are fine).`,
    ],
    [
      'ECS_GVISOR_RUNSC_ARGS=--network=host \\\n--platform=systrap\n',
      {},
      `${FILE} line 1: "ECS_GVISOR_RUNSC_ARGS=--network=host \\" ends in a backslash, which systemd joins with the next line and ecs-gvisor does not.`,
    ],
    ['ECS_GVISOR_AUDIT_ACTION=kill\n', {}, `${FILE}: ECS_GVISOR_AUDIT_ACTION="kill" must be report or stop.`],
    ['ECS_GVISOR_AWS_REGION=mars\n', {}, `${FILE}: ECS_GVISOR_AWS_REGION="mars" must be an AWS region such as us-east-1.`],
    ['ECS_GVISOR_METRICS_PORT=70000\n', {}, `${FILE}: ECS_GVISOR_METRICS_PORT="70000" must be at most 65535.`],
    [
      'ECS_GVISOR_METRICS_ADDRESS=localhost\n',
      {},
      `${FILE}: ECS_GVISOR_METRICS_ADDRESS="localhost" must be an IP address of this host (127.0.0.1, 0.0.0.0, ::, or one of its own).`,
    ],
    [
      'ECS_GVISOR_METRICS_TEXTFILE=/var/lib/node_exporter/ecs_gvisor.txt\n',
      {},
      `${FILE}: ECS_GVISOR_METRICS_TEXTFILE="/var/lib/node_exporter/ecs_gvisor.txt" must end in .prom (node_exporter's textfile collector reads only those).`,
    ],
    [
      'ECS_GVISOR_INTROSPECTION_URL=localhost:51678\n',
      {},
      `${FILE}: ECS_GVISOR_INTROSPECTION_URL="localhost:51678" must be an http:// or https:// URL.`,
    ],
    [
      'ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS=10\n',
      {},
      `${FILE}: ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS="10" must be at least 30 (Auto Scaling’s minimum).`,
    ],
    [
      'ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS=7201\n',
      {},
      `${FILE}: ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS="7201" must be at most 7200.`,
    ],
    [
      '',
      { ECS_GVISOR_LAUNCH_HOOK: 'my hook' },
      'environment: ECS_GVISOR_LAUNCH_HOOK="my hook" must be a lifecycle hook name (letters, digits, "-", "_", "/").',
    ],
    ['ECS_GVISOR_SPOT_DRAIN=maybe\n', {}, `${FILE}: ECS_GVISOR_SPOT_DRAIN="maybe" must be true or false.`],
    [
      'ECS_GVISOR_ECS_CALLS_PER_HOUR=30\n',
      { ECS_GVISOR_ECS_MAX_CALLS_PER_HOUR: '20' },
      'environment: ECS_GVISOR_ECS_MAX_CALLS_PER_HOUR=20 must be at least ECS_GVISOR_ECS_CALLS_PER_HOUR=30.',
    ],
  ])('rejects %j %j with one sentence naming file, key and value', (text, env, message) => {
    try {
      parse(text, env as Record<string, string>);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(EcsGvisorError);
      expect((err as EcsGvisorError).exitCode).toBe(2);
      expect((err as Error).message).toBe(message);
    }
  });

  it('https:// and local sources may rely on the .sha512 beside them; http:// with a pin is accepted', () => {
    expect(parse('ECS_GVISOR_RUNSC_SOURCE=https://storage.example/runsc\n').RUNSC_SHA512).toBeUndefined();
    expect(parse('ECS_GVISOR_RUNSC_SOURCE=/opt/gvisor/runsc\n').RUNSC_SOURCE).toBe('/opt/gvisor/runsc');
    expect(parse(`ECS_GVISOR_RUNSC_SOURCE=http://mirror.internal/runsc\nECS_GVISOR_RUNSC_SHA512=${'A'.repeat(128)}\n`).RUNSC_SHA512).toBe(
      'a'.repeat(128),
    );
  });

  it('watch defaults: 12 ECS calls an hour, 60 at most, report-only audit, attributes on, no metrics, no Auto Scaling escalation', () => {
    expect(parse('')).toMatchObject({
      ECS_CALLS_PER_HOUR: 12,
      ECS_MAX_CALLS_PER_HOUR: 60,
      ECS_ALERT_POLL_SECONDS: 60,
      ECS_HEARTBEAT_MINUTES: 720,
      ACS_GRACE_SECONDS: 30,
      ECS_FIRST_POLL_SPREAD_SECONDS: 10,
      AGENT_LOG_FILE: '/var/log/ecs/ecs-agent.log',
      AUDIT_ACTION: 'report',
      PUBLISH_ATTRIBUTES: true,
      SET_INSTANCE_HEALTH: false,
      INTROSPECTION_URL: 'http://127.0.0.1:51678',
      UNHEALTHY_SECONDS: 300,
      HEAL_MAX_RESTARTS: 3,
    });
    expect(parse('').METRICS_PORT).toBeUndefined();
    expect(parse('').METRICS_ADDRESS).toBe('127.0.0.1');
    expect(parse('').METRICS_TEXTFILE).toBeUndefined();
    expect(parse('ECS_GVISOR_METRICS_ADDRESS=::\n').METRICS_ADDRESS).toBe('::');
  });

  it('lifecycle defaults: no hooks (no IMDS lifecycle traffic), heartbeat timeout 3600 s, 30 min launch and drain limits', () => {
    expect(parse('')).toMatchObject({
      LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: 3600,
      LAUNCH_TIMEOUT_SECONDS: 1800,
      DRAIN_TIMEOUT_SECONDS: 1800,
      LIFECYCLE_POLL_SECONDS: 5,
    });
    const c = parse('');
    expect([c.LAUNCH_HOOK, c.TERMINATE_HOOK, c.ASG_NAME, c.SPOT_DRAIN]).toEqual([undefined, undefined, undefined, undefined]);
    expect(parse('ECS_GVISOR_LAUNCH_HOOK=ecs-gvisor/launch-1\n').LAUNCH_HOOK).toBe('ecs-gvisor/launch-1');
  });

  it('treats an empty value as the default', () => {
    expect(parse('ECS_GVISOR_RUNSC_PATH=\n').RUNSC_PATH).toBe('/usr/local/bin/runsc');
  });
});

describe('image references', () => {
  it.each([
    'busybox',
    'ecs-gvisor/probe:1',
    'amazon/amazon-ecs-agent:latest',
    'public.ecr.aws/ecs/amazon-ecs-agent:v1.101.2',
    '111122223333.dkr.ecr.us-east-1.amazonaws.com/probe:1',
    'localhost:5000/a/b__c-d.e:tag_1.0',
    `busybox@sha256:${'a'.repeat(64)}`,
    `registry.example:443/x/busybox:1@sha256:${'0'.repeat(64)}`,
  ])('accepts %s', (ref) => {
    expect(parseConfig({ fileText: undefined, filePath: FILE, env: { ECS_GVISOR_PROBE_IMAGE: ref } }).PROBE_IMAGE).toBe(ref);
  });
});
