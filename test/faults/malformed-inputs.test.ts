/**
 * Malformed inputs beyond daemon.json (daemon-json-hostile.test.ts has those): our configuration file
 * and environment, ecs.config, instance metadata replies and ECS API replies. Each is one clear error:
 * through the CLI, exit 2 (configuration) or 3 (a host file) with one line on stderr naming the file, key
 * and value, and nothing written (daemon.json byte-identical, no backup, no state, no reload); through
 * the adapters against the fakes, a typed error naming the endpoint or operation and the value, never
 * a value passed on. The counts are reported for the fault table of docs/testing.md.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { AwsEcs } from '../../src/adapters/aws.js';
import { ImdsV2 } from '../../src/adapters/imds-v2.js';
import { SystemClock } from '../../src/adapters/system-clock.js';
import { parseMetadata } from '../../src/agent/introspection.js';
import { instanceIdOf, regionOfImds, targetStateOf } from '../../src/aws/imds-values.js';
import { EcsGvisorError } from '../../src/errors.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, reloadCount, resetDocker } from '../harness/docker-state.js';
import { ARN, FakeEcs, FakeImds } from '../harness/fake-aws.js';

const d = inject('dockerd');
const DAEMON_JSON = '{\n  "log-driver": "json-file"\n}\n';
const tally = { tried: 0, survived: 0 };

/** Run bootstrap with this input and check nothing was written; returns stderr's one line. */
async function refusedByCli(env: Record<string, string>, code: number): Promise<string> {
  tally.tried++;
  const reloads = reloadCount(d);
  const r = await runCli(['bootstrap', '--only', 'runtime,agent'], env);
  const lines = r.stderr.trim().split('\n');
  expect(r.code).toBe(code);
  expect(lines).toHaveLength(1);
  expect(readFileSync(d.daemonJson, 'utf8')).toBe(DAEMON_JSON);
  const state = env.ECS_GVISOR_STATE_DIR!;
  // The host lock and its holder's name are not state: nothing else may be there.
  expect(existsSync(state) ? readdirSync(state).filter((f) => f !== 'lock' && f !== 'lock.json') : []).toEqual([]);
  expect(reloadCount(d)).toBe(reloads);
  tally.survived++;
  return lines[0]!;
}

afterAll(() => {
  process.stderr.write(
    `faults: malformed inputs beyond daemon.json: ${tally.tried} tried, ${tally.survived} refused cleanly, ${tally.tried - tally.survived} lost\n`,
  );
});

describe('our configuration, through the CLI: exit 2, one sentence naming file, key and value, nothing written', () => {
  const CONFIG: Array<[string, string, RegExp]> = [
    ['a relative agent cache directory', 'ECS_GVISOR_AGENT_CACHE_DIR=cache\n', /ECS_GVISOR_AGENT_CACHE_DIR="cache"/],
    ['a misspelt key', 'ECS_GVISOR_RUNSC_PAHT=/usr/bin/runsc\n', /line 1: unknown key ECS_GVISOR_RUNSC_PAHT/],
    ['a line that is not KEY=VALUE', '# ok\nrunsc please\n', /line 2: "runsc please" is not a KEY=VALUE line/],
    ['a boolean that is not one', 'ECS_GVISOR_PUBLISH_ATTRIBUTES=sure\n', /ECS_GVISOR_PUBLISH_ATTRIBUTES="sure" must be true or false/],
    ['a number that is not one', 'ECS_GVISOR_DRIFT_CHECK_SECONDS=ten\n', /ECS_GVISOR_DRIFT_CHECK_SECONDS="ten"/],
    ['a negative interval', 'ECS_GVISOR_AUDIT_INTERVAL_SECONDS=-5\n', /ECS_GVISOR_AUDIT_INTERVAL_SECONDS="-5"/],
    ['a port past 65535', 'ECS_GVISOR_METRICS_PORT=70000\n', /ECS_GVISOR_METRICS_PORT="70000" must be at most 65535/],
    [
      'an alert poll interval of 0 beside a good key',
      'ECS_GVISOR_SPOT_DRAIN=true\nECS_GVISOR_ECS_ALERT_POLL_SECONDS=0\n',
      /ECS_GVISOR_ECS_ALERT_POLL_SECONDS="0"/,
    ],
    ['a short checksum', 'ECS_GVISOR_RUNSC_SHA512=abc\n', /ECS_GVISOR_RUNSC_SHA512="abc" must be 128 hexadecimal digits/],
    ['an unknown audit action', 'ECS_GVISOR_AUDIT_ACTION=kill\n', /ECS_GVISOR_AUDIT_ACTION="kill" must be report or stop/],
    ['a region that is not one', 'ECS_GVISOR_AWS_REGION=mars\n', /ECS_GVISOR_AWS_REGION="mars"/],
    ['an introspection URL without a scheme', 'ECS_GVISOR_INTROSPECTION_URL=localhost:51678\n', /must be an http:\/\/ or https:\/\/ URL/],
    ['a hook name with a space', 'ECS_GVISOR_LAUNCH_HOOK=my hook\n', /ECS_GVISOR_LAUNCH_HOOK="my hook"/],
    ['a heartbeat timeout under 30 s', 'ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS=10\n', /must be at least 30/],
    [
      'a ceiling under the steady budget',
      'ECS_GVISOR_ECS_CALLS_PER_HOUR=30\nECS_GVISOR_ECS_MAX_CALLS_PER_HOUR=20\n',
      /ECS_GVISOR_ECS_MAX_CALLS_PER_HOUR=20 must be at least ECS_GVISOR_ECS_CALLS_PER_HOUR=30/,
    ],
    [
      'a built-in runtime as ours',
      'ECS_GVISOR_RUNTIME_NAME=runc\n',
      /ECS_GVISOR_RUNTIME_NAME="runc" must not name one of Docker’s built-in runtimes/,
    ],
    ['a NUL byte in the file', 'ECS_GVISOR_AUDIT_ACTION=report\0\n', /ECS_GVISOR_AUDIT_ACTION/],
  ];
  const ENV: Array<[string, Record<string, string>, RegExp]> = [
    // The environment wins over the file, so these keys are tried there.
    ['a relative runsc path', { ECS_GVISOR_RUNSC_PATH: 'runsc' }, /environment: ECS_GVISOR_RUNSC_PATH="runsc" must be an absolute path/],
    [
      'a Docker host without a scheme',
      { ECS_GVISOR_DOCKER_HOST: '/var/run/docker.sock' },
      /environment: ECS_GVISOR_DOCKER_HOST="\/var\/run\/docker.sock"/,
    ],
    [
      'runsc flags without --',
      { ECS_GVISOR_RUNSC_ARGS: 'platform=kvm' },
      /environment: ECS_GVISOR_RUNSC_ARGS="platform=kvm" must be flags/,
    ],
    [
      'an environment boolean that is not one',
      { ECS_GVISOR_SPOT_DRAIN: 'maybe' },
      /environment: ECS_GVISOR_SPOT_DRAIN="maybe" must be true or false/,
    ],
    [
      'an environment interval of 0',
      { ECS_GVISOR_PROBE_TIMEOUT_SECONDS: '0' },
      /environment: ECS_GVISOR_PROBE_TIMEOUT_SECONDS="0" must be at least 1/,
    ],
    ['an environment heartbeat timeout past 7200', { ECS_GVISOR_LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS: '7201' }, /must be at most 7200/],
  ];

  beforeEach(async () => {
    await resetDocker(d, DAEMON_JSON);
  });

  it.each(CONFIG)('%s', async (_name, text, message) => {
    const dir = mkdtempSync('/tmp/egv-malformed-');
    writeFileSync(`${dir}/ecs-gvisor.config`, text);
    const line = await refusedByCli(cliEnv(d, { ECS_GVISOR_CONFIG: `${dir}/ecs-gvisor.config`, ECS_GVISOR_STATE_DIR: `${dir}/state` }), 2);
    expect(line).toContain(`${dir}/ecs-gvisor.config`);
    expect(line).toMatch(message);
  });

  it.each(ENV)('%s', async (_name, env, message) => {
    const dir = mkdtempSync('/tmp/egv-malformed-');
    expect(await refusedByCli(cliEnv(d, { ...env, ECS_GVISOR_STATE_DIR: `${dir}/state` }), 2)).toMatch(message);
  });
});

describe('ecs.config, through the CLI: read before any step, so exit 3 with nothing written', () => {
  beforeEach(async () => {
    await resetDocker(d, DAEMON_JSON);
  });

  it.each([['ECS_GVISOR_ECS_CONFIG'], ['ECS_GVISOR_ECS_INSTANCE_CONFIG']])('%s is a directory', async (key) => {
    const dir = mkdtempSync('/tmp/egv-malformed-');
    mkdirSync(`${dir}/ecs.config`);
    const env = cliEnv(d, {
      ECS_GVISOR_ECS_CONFIG: `${dir}/none`,
      ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/none`,
      [key]: `${dir}/ecs.config`,
      ECS_GVISOR_STATE_DIR: `${dir}/state`,
    });
    expect(await refusedByCli(env, 3)).toContain(`${dir}/ecs.config cannot be read`);
  });
});

describe('special files where a file is expected: refused at once with one sentence, never read whole, never waited on', () => {
  beforeEach(async () => {
    await resetDocker(d, DAEMON_JSON);
  });

  /** A FIFO nobody writes to: opening it for reading blocks unless opened non-blocking. */
  const fifo = (path: string) => execFileSync('mkfifo', [path]);
  /** 1 GiB that costs no disk: read whole, it would take seconds and a GiB of memory. */
  const huge = (path: string) => execFileSync('truncate', ['-s', '1G', path]);
  const cases: Array<[string, (dir: string) => Record<string, string>, number, RegExp]> = [
    [
      'the configuration file is a FIFO',
      (dir) => {
        fifo(`${dir}/c`);
        return { ECS_GVISOR_CONFIG: `${dir}/c` };
      },
      2,
      /Cannot read the configuration: it is a FIFO, not a regular file/,
    ],
    [
      'ecs.config is a FIFO',
      (dir) => {
        fifo(`${dir}/e`);
        return { ECS_GVISOR_ECS_CONFIG: `${dir}/e` };
      },
      3,
      /\/e cannot be read \(it is a FIFO, not a regular file\)/,
    ],
    [
      'ecs.config links to /dev/zero',
      (dir) => {
        symlinkSync('/dev/zero', `${dir}/e`);
        return { ECS_GVISOR_ECS_CONFIG: `${dir}/e` };
      },
      3,
      /\/e cannot be read \(it is a character device, not a regular file\)/,
    ],
    [
      'ecs.config is 1 GiB',
      (dir) => {
        huge(`${dir}/e`);
        return { ECS_GVISOR_ECS_CONFIG: `${dir}/e` };
      },
      3,
      /\/e cannot be read \(it holds 1073741824 bytes, more than the 4194304 read here\)/,
    ],
  ];
  it.each(cases)('%s', async (_name, make, code, message) => {
    const dir = mkdtempSync('/tmp/egv-special-');
    const env = cliEnv(d, {
      ECS_GVISOR_ECS_CONFIG: `${dir}/none`,
      ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/none`,
      ECS_GVISOR_STATE_DIR: `${dir}/state`,
      ...make(dir),
    });
    const started = Date.now();
    expect(await refusedByCli(env, code)).toMatch(message);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it.each([
    ['a FIFO', (p: string) => fifo(p), /it is a FIFO, not a regular file/],
    ['1 GiB', (p: string) => huge(p), /it holds 1073741824 bytes, more than the 4194304 read here/],
  ])('daemon.json is %s: exit 3, nothing replaced', async (_name, make, message) => {
    tally.tried++;
    const saved = `${d.daemonJson}.saved`;
    renameSync(d.daemonJson, saved);
    try {
      make(d.daemonJson);
      const dir = mkdtempSync('/tmp/egv-special-');
      const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_STATE_DIR: `${dir}/state` }), 30_000);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(message);
      expect(lstatSync(d.daemonJson).isFIFO() || statSync(d.daemonJson).size === 1024 ** 3).toBe(true);
    } finally {
      rmSync(d.daemonJson, { force: true });
      renameSync(saved, d.daemonJson);
    }
    tally.survived++;
  });
});

describe("the state dir: refused unless it is root's alone; never a link followed inside it", () => {
  beforeEach(async () => {
    await resetDocker(d, DAEMON_JSON);
  });

  it.each([
    [
      'writable by others',
      (dir: string) => {
        mkdirSync(`${dir}/state`);
        chmodSync(`${dir}/state`, 0o777);
      },
      /is writable by others \(mode 777\)/,
    ],
    [
      'owned by another user',
      (dir: string) => {
        mkdirSync(`${dir}/state`);
        chownSync(`${dir}/state`, 65534, 65534);
      },
      /is owned by uid 65534, not 0/,
    ],
    [
      'a symbolic link',
      (dir: string) => {
        mkdirSync(`${dir}/elsewhere`);
        symlinkSync(`${dir}/elsewhere`, `${dir}/state`);
      },
      /is a symbolic link/,
    ],
  ])('%s: exit 3, nothing changed', async (_name, make, message) => {
    tally.tried++;
    const dir = mkdtempSync('/tmp/egv-statedir-');
    make(dir);
    const reloads = reloadCount(d);
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_STATE_DIR: `${dir}/state` }));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(
      new RegExp(`^ecs-gvisor: The state dir ECS_GVISOR_STATE_DIR=${dir}/state is not safe to use: .*; nothing was changed\\.\n$`),
    );
    expect(r.stderr).toMatch(message);
    expect(readFileSync(d.daemonJson, 'utf8')).toBe(DAEMON_JSON);
    expect(reloadCount(d)).toBe(reloads);
    tally.survived++;
  });

  it('an older 0755 state dir is narrowed to 0700 and its files written 0600; a symlink planted as a state file is replaced, not followed', async () => {
    tally.tried++;
    const dir = mkdtempSync('/tmp/egv-statedir-');
    mkdirSync(`${dir}/state`, { mode: 0o755 });
    chmodSync(`${dir}/state`, 0o755);
    writeFileSync(`${dir}/victim`, 'not ours\n');
    symlinkSync(`${dir}/victim`, `${dir}/state/runtime.json`);
    const r = await runCli(['bootstrap', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_STATE_DIR: `${dir}/state` }));
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(`${dir}/state`).mode & 0o777).toBe(0o700);
    expect(readFileSync(`${dir}/victim`, 'utf8')).toBe('not ours\n');
    expect(lstatSync(`${dir}/state/runtime.json`).isFile()).toBe(true);
    for (const f of readdirSync(`${dir}/state`)) {
      const st = lstatSync(`${dir}/state/${f}`);
      if (st.isFile() && f !== 'lock') expect(st.mode & 0o777, f).toBe(0o600);
    }
    expect((await runCli(['rollback', '--only', 'runtime'], cliEnv(d, { ECS_GVISOR_STATE_DIR: `${dir}/state` }))).code).toBe(0);
    tally.survived++;
  });
});

describe('instance metadata replies: one clear error naming the path and the value, never passed on', () => {
  let imds: FakeImds;
  beforeAll(async () => {
    imds = await new FakeImds().start();
  });
  afterAll(async () => {
    await imds.stop();
  });
  beforeEach(() => imds.reset());

  const values: Array<[string, () => unknown, RegExp]> = [
    [
      'an instance ID that is an HTML page',
      () => instanceIdOf('<html><body>Login required</body></html>'),
      /instance-id answered "<html><body>Login required.*not an EC2 instance ID/,
    ],
    ['an instance ID with a shell command', () => instanceIdOf('i-0123456789abcdef0; rm -rf /'), /not an EC2 instance ID/],
    ['an instance ID of the wrong length', () => instanceIdOf('i-0123'), /"i-0123", which is not an EC2 instance ID/],
    ['no instance ID at all', () => instanceIdOf('  \n'), /has no \/latest\/meta-data\/instance-id/],
    ['a region that is a JSON document', () => regionOfImds('{"region":"us-east-1"}'), /placement\/region answered .*not an AWS region/],
    [
      'a lifecycle state that is an error page',
      () => targetStateOf('<?xml version="1.0"?><Error/>'),
      /target-lifecycle-state answered .*not an Auto Scaling lifecycle state/,
    ],
    ['a lifecycle state of 10,000 characters', () => targetStateOf('x'.repeat(10_000)), /answered "x{60}"…, which is not/],
  ];
  it.each(values)('%s', (_name, read, message) => {
    tally.tried++;
    expect(read).toThrow(EcsGvisorError);
    expect(read).toThrow(message);
    tally.survived++;
  });

  it.each([
    ['a session token that is an HTML page', '<html>\n<h1>Proxy error</h1>\n</html>'],
    ['a session token with spaces', 'token with spaces'],
  ])('%s: refused before it is sent as a header', async (_name, reply) => {
    tally.tried++;
    imds.tokenReply = reply;
    imds.paths.set('/latest/meta-data/instance-id', 'i-0123456789abcdef0');
    const client = new ImdsV2(new SystemClock(), { baseUrl: imds.url, timeoutMs: 1000 });
    await expect(client.get('/latest/meta-data/instance-id')).rejects.toMatchObject({
      code: 'IMDS_FAILED',
      message: expect.stringMatching(/for a session token, which is not one/),
    });
    expect(imds.requests.filter((r) => r.method === 'GET')).toHaveLength(0);
    tally.survived++;
  });
});

describe('ECS API replies: a typed error naming the operation, the watch carries on', () => {
  let ecs: FakeEcs;
  beforeAll(async () => {
    ecs = await new FakeEcs().start();
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'secret' });
  });
  afterAll(async () => {
    await ecs.stop();
  });

  it.each([
    ['an HTML page with 200', { raw: '<html><body>502 Bad Gateway</body></html>', contentType: 'text/html' }],
    ['truncated JSON', { raw: '{"containerInstances": [{"containerInstanceArn": "arn' }],
    ['JSON that is an array', { raw: '[1, 2, 3]' }],
    ['an empty body with 500', { raw: '', status: 500 }],
    ['a 403 with an unknown error type', { raw: '{"__type": "SomethingNew", "message": "no"}', status: 403 }],
    ['the wrong type for the instance list', { raw: '{"containerInstances": "all of them"}' }],
  ] as const)('%s', async (_name, reply) => {
    tally.tried++;
    ecs.behaviour = () => ({ ...reply });
    const port = new AwsEcs({ region: 'us-east-1', endpoint: ecs.url, requestTimeoutMs: 2000 });
    // Never "not found" (which the watch would act on): a reply without the list is not an answer.
    const err = await port.describeContainerInstance('prod', ARN).then(
      (v) => v,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EcsGvisorError);
    expect((err as EcsGvisorError).code).toBe('AWS_API');
    expect((err as Error).message).toMatch(/^ECS DescribeContainerInstances failed: /);
    tally.survived++;
  });

  it.each([
    ['introspection that is an HTML page', '<html>', /51678.*not JSON/],
    ['introspection with an instance ID for an ARN', '{"Cluster":"prod","ContainerInstanceArn":"i-123"}', /not a container instance ARN/],
    ['introspection that is a JSON string', '"registered"', /51678\/v1\/metadata answered JSON that is not an object/],
    ['introspection that is null', 'null', /51678\/v1\/metadata answered JSON that is not an object/],
  ])('%s', (_name, body, message) => {
    tally.tried++;
    expect(() => parseMetadata('http://127.0.0.1:51678/v1/metadata', body)).toThrow(message);
    tally.survived++;
  });
});
