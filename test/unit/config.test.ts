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
    ['', { ECS_GVISOR_RUNTIME_NAME: 'runc' }, 'environment: ECS_GVISOR_RUNTIME_NAME="runc" must not name one of Docker’s built-in runtimes.'],
    ['ECS_GVISOR_REPLACE_DEFAULT_RUNTIME=maybe\n', {}, `${FILE}: ECS_GVISOR_REPLACE_DEFAULT_RUNTIME="maybe" must be true or false.`],
    ['ECS_GVISOR_DOCKER_HOST=/var/run/docker.sock\n', {}, `${FILE}: ECS_GVISOR_DOCKER_HOST="/var/run/docker.sock" must be unix:///path or tcp://host:port.`],
    ['ECS_GVISOR_RUNSC_ARGS=network=host\n', {}, `${FILE}: ECS_GVISOR_RUNSC_ARGS="network=host" must be flags that each start with "--".`],
    ['ECS_GVISOR_RUNSC_SHA512=abc\n', {}, `${FILE}: ECS_GVISOR_RUNSC_SHA512="abc" must be 128 hexadecimal digits.`],
    ['ECS_GVISOR_PROBE_TIMEOUT_SECONDS=0\n', {}, `${FILE}: ECS_GVISOR_PROBE_TIMEOUT_SECONDS="0" must be at least 1.`],
    ['ECS_GVISOR_RUNSC_PAHT=/x\n', {}, `${FILE} line 1: unknown key ECS_GVISOR_RUNSC_PAHT (keys start with ECS_GVISOR_; see the README's configuration reference).`],
    ['\njust words\n', {}, `${FILE} line 2: "just words" is not a KEY=VALUE line.`],
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

  it('treats an empty value as the default', () => {
    expect(parse('ECS_GVISOR_RUNSC_PATH=\n').RUNSC_PATH).toBe('/usr/local/bin/runsc');
  });
});
