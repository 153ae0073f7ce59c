/**
 * Per-task enforcement from cgroup layouts: v1 with the cgroupfs driver (Amazon Linux 2, and this
 * machine: recorded from a runsc container of the test dockerd), v2 with the systemd driver (Amazon
 * Linux 2023: ECS's ecstasks-<task>.slice, Docker's docker-<id>.scope) and with cgroupfs, and a hybrid
 * host. The v2 layouts follow the kernel's and systemd's naming (this machine has cgroup v1 only).
 */
import { describe, expect, it } from 'vitest';
import { parseOomKills } from '../../src/adapters/linux-host.js';
import { cgroupDir, expectedLimits, locate, parseLimits, parseProcCgroup, underParent } from '../../src/cgroups.js';
import type { ContainerState, EcsTaskView } from '../../src/ports.js';
import { taskLine } from '../../src/status/status-text.js';
import { claimOf, plausibleTaskArn, TASK_ARN_LABEL, taskLimits } from '../../src/watch/ecs-tasks.js';
import { cgroupFilesFor, judgeTask, PIDS_TIGHT, pidsHeadroom, sandboxEnd } from '../../src/watch/enforcement.js';

const ID = `${'c0ffee'.repeat(10)}abcd`;
const TASK = '0123456789abcdef0123456789abcdef';

function container(o: Partial<ContainerState> = {}): ContainerState {
  return {
    id: ID,
    name: `ecs-app-1-web-${TASK.slice(0, 8)}`,
    runtime: 'runsc',
    status: 'running',
    running: true,
    pid: 4242,
    startedAt: '',
    finishedAt: '',
    exitCode: 0,
    labels: {},
    resources: { memory: 268_435_456, nanoCpus: 500_000_000, pidsLimit: 100, cgroupParent: `/ecs/${TASK}` },
    security: { user: '1000', privileged: false, capAdd: [], writableHostMounts: [], usernsMode: '' },
    ...o,
  };
}

/** v1, cgroupfs, ECS on Amazon Linux 2: every controller at /ecs/<task>/<id> (cpu and cpuacct joined). */
const V1_ECS = [
  `12:pids:/ecs/${TASK}/${ID}`,
  `11:memory:/ecs/${TASK}/${ID}`,
  `10:cpu,cpuacct:/ecs/${TASK}/${ID}`,
  `9:name=systemd:/ecs/${TASK}/${ID}`,
  '',
].join('\n');

/** v2, systemd driver, ECS on Amazon Linux 2023. */
const V2_SYSTEMD = `0::/ecstasks.slice/ecstasks-${TASK}.slice/docker-${ID}.scope\n`;

function filesV1(dir: string, parent: string, o: { mem?: string; quota?: string; pids?: string; current?: string } = {}) {
  return {
    [`/sys/fs/cgroup/pids${dir}/pids.current`]: o.current ?? '27\n',
    [`/sys/fs/cgroup/memory${dir}/memory.limit_in_bytes`]: o.mem ?? '268435456\n',
    [`/sys/fs/cgroup/cpu${dir}/cpu.cfs_quota_us`]: o.quota ?? '50000\n',
    [`/sys/fs/cgroup/cpu${dir}/cpu.cfs_period_us`]: '100000\n',
    [`/sys/fs/cgroup/pids${dir}/pids.max`]: o.pids ?? '100\n',
    [`/sys/fs/cgroup/memory${parent}/memory.limit_in_bytes`]: '536870912\n',
    [`/sys/fs/cgroup/cpu${parent}/cpu.cfs_quota_us`]: '-1\n',
    [`/sys/fs/cgroup/cpu${parent}/cpu.cfs_period_us`]: '100000\n',
    [`/sys/fs/cgroup/pids${parent}/pids.max`]: 'max\n',
  };
}

const policy = { policy: [], usernsRemap: false } as const;

describe('cgroup layouts', () => {
  it('parses v1, v2 and hybrid /proc/<pid>/cgroup, locating each controller where its limits live', () => {
    const v1 = parseProcCgroup(V1_ECS);
    expect(locate(v1, 'cpu')).toEqual({ version: 1, controller: 'cpu', path: `/ecs/${TASK}/${ID}` });
    expect(cgroupDir(locate(v1, 'memory')!, `/ecs/${TASK}/${ID}`)).toBe(`/sys/fs/cgroup/memory/ecs/${TASK}/${ID}`);
    const v2 = parseProcCgroup(V2_SYSTEMD);
    expect(locate(v2, 'memory')).toEqual({
      version: 2,
      controller: 'memory',
      path: `/ecstasks.slice/ecstasks-${TASK}.slice/docker-${ID}.scope`,
    });
    expect(cgroupDir(locate(v2, 'pids')!, '/')).toBe('/sys/fs/cgroup');
    // This machine's own layout: v1 controllers, cpu and cpuacct apart, and an empty unified hierarchy.
    const hybrid = parseProcCgroup('4:memory:/docker/x\n2:cpuacct:/\n1:cpu:/docker/x\n0::/\n');
    expect(locate(hybrid, 'memory')?.version).toBe(1);
    expect(locate(hybrid, 'pids')).toBeUndefined();
  });

  it('reads v1 and v2 limit files: unlimited is -1, max or v1’s page-aligned 2^63', () => {
    expect(
      parseLimits(1, {
        'memory.limit_in_bytes': '9223372036854771712',
        'cpu.cfs_quota_us': '-1',
        'cpu.cfs_period_us': '100000',
        'pids.max': 'max',
      }),
    ).toEqual({
      memoryBytes: undefined,
      cpuQuotaUs: undefined,
      cpuPeriodUs: 100000,
      pids: undefined,
    });
    expect(parseLimits(2, { 'memory.max': '268435456\n', 'cpu.max': '50000 100000\n', 'pids.max': '100\n' })).toEqual({
      memoryBytes: 268435456,
      cpuQuotaUs: 50000,
      cpuPeriodUs: 100000,
      pids: 100,
    });
    expect(parseLimits(2, { 'memory.max': 'max', 'cpu.max': 'max 100000', 'pids.max': 'max' })).toEqual({ cpuPeriodUs: 100000 });
  });

  it('translates HostConfig as Docker does: --cpus into a quota per 100 ms period, 0 and -1 as none', () => {
    expect(expectedLimits({ memory: 64 << 20, nanoCpus: 1_500_000_000, pidsLimit: 50 })).toEqual({
      memoryBytes: 64 << 20,
      cpuQuotaUs: 150_000,
      cpuPeriodUs: 100_000,
      pids: 50,
    });
    expect(expectedLimits({ memory: 0, cpuQuota: 20_000, cpuPeriod: 50_000, pidsLimit: -1 })).toEqual({
      cpuQuotaUs: 20_000,
      cpuPeriodUs: 50_000,
    });
  });

  it('knows a cgroup parent as a path (cgroupfs) or a slice (systemd)', () => {
    expect(underParent(`/ecs/${TASK}`, `/ecs/${TASK}`)).toBe(true);
    expect(underParent(`/ecs/other`, `/ecs/${TASK}`)).toBe(false);
    expect(underParent(`/ecstasks.slice/ecstasks-${TASK}.slice`, `ecstasks-${TASK}.slice`)).toBe(true);
    expect(underParent('/system.slice', `ecstasks-${TASK}.slice`)).toBe(false);
  });
});

describe('per-task enforcement', () => {
  it('v1 cgroupfs (ECS on Amazon Linux 2): in its own cgroup under the task, every limit held', () => {
    const dir = `/ecs/${TASK}/${ID}`;
    const files = filesV1(dir, `/ecs/${TASK}`);
    expect(new Set(cgroupFilesFor(V1_ECS))).toEqual(new Set(Object.keys(files)));
    const t = judgeTask(container(), { sandbox: V1_ECS, gofers: [{ pid: 4243, cgroups: V1_ECS }] }, files, policy);
    expect(t.problems).toEqual([]);
    expect(t.enforced).toEqual({ memoryBytes: 268435456, cpuQuotaUs: 50000, cpuPeriodUs: 100000, pids: 100 });
    expect(t.parent).toEqual({ path: `/ecs/${TASK}`, limits: { memoryBytes: 536870912, cpuPeriodUs: 100000 } });
  });

  it('v2 systemd driver (ECS on Amazon Linux 2023): the scope under the task slice, limits in memory.max, cpu.max, pids.max', () => {
    const scope = `/sys/fs/cgroup/ecstasks.slice/ecstasks-${TASK}.slice/docker-${ID}.scope`;
    const files = { [`${scope}/memory.max`]: '268435456\n', [`${scope}/cpu.max`]: '50000 100000\n', [`${scope}/pids.max`]: '100\n' };
    expect(cgroupFilesFor(V2_SYSTEMD)).toContain(`${scope}/cpu.max`);
    expect(cgroupFilesFor(V2_SYSTEMD)).toContain(`/sys/fs/cgroup/ecstasks.slice/ecstasks-${TASK}.slice/memory.max`);
    const c = container({
      resources: { memory: 268_435_456, nanoCpus: 500_000_000, pidsLimit: 100, cgroupParent: `ecstasks-${TASK}.slice` },
    });
    expect(judgeTask(c, { sandbox: V2_SYSTEMD, gofers: [] }, files, policy).problems).toEqual([]);
    // The same container whose scope holds no memory limit (a runsc that did not apply it).
    const loose = judgeTask(c, { sandbox: V2_SYSTEMD, gofers: [] }, { ...files, [`${scope}/memory.max`]: 'max\n' }, policy);
    expect(loose.problems).toEqual(['memory limit 268435456 asked, none enforced']);
  });

  it('v2 cgroupfs driver: /docker/<id>', () => {
    const c = container({ resources: { memory: 64 << 20 } });
    const t = judgeTask(
      c,
      { sandbox: `0::/docker/${ID}\n`, gofers: [] },
      { [`/sys/fs/cgroup/docker/${ID}/memory.max`]: String(64 << 20) },
      policy,
    );
    expect(t.problems).toEqual([]);
  });

  it('a sandbox outside its container’s cgroup, a gofer elsewhere, limits missing: each a problem', () => {
    const outside = `11:memory:/system.slice/containerd.service\n10:cpu,cpuacct:/system.slice/containerd.service\n12:pids:/system.slice/containerd.service\n`;
    const t = judgeTask(container(), { sandbox: outside, gofers: [] }, {}, policy);
    expect(t.problems[0]).toBe(`its process (pid 4242) is in cgroup /system.slice/containerd.service, not the container's own`);
    const g = judgeTask(
      container(),
      { sandbox: V1_ECS, gofers: [{ pid: 99, cgroups: outside }] },
      filesV1(`/ecs/${TASK}/${ID}`, `/ecs/${TASK}`),
      policy,
    );
    expect(g.problems).toEqual([`its gofer (pid 99) is in cgroup /system.slice/containerd.service, not the sandbox's /ecs/${TASK}/${ID}`]);
    const files = filesV1(`/ecs/${TASK}/${ID}`, `/ecs/${TASK}`, { mem: '9223372036854771712', quota: '-1', pids: 'max' });
    expect(judgeTask(container(), { sandbox: V1_ECS, gofers: [] }, files, policy).problems).toEqual([
      'memory limit 268435456 asked, none enforced',
      'CPU quota 0.500 CPUs asked, none enforced',
      'pids limit 100 asked, none enforced',
    ]);
    const wrongParent = judgeTask(
      container({ resources: { cgroupParent: '/ecs/another-task' } }),
      { sandbox: V1_ECS, gofers: [] },
      {},
      policy,
    );
    expect(wrongParent.problems).toEqual([`its cgroup /ecs/${TASK}/${ID} is not under the cgroup parent /ecs/another-task`]);
    expect(judgeTask(container(), { gofers: [] }, {}, policy).problems[0]).toMatch(/cannot be read/);
  });

  it('reports hygiene, and makes a violation of what the policy names', () => {
    const risky = container({
      security: { user: '', privileged: true, capAdd: ['NET_ADMIN'], writableHostMounts: ['/var/run/docker.sock'], usernsMode: '' },
    });
    const reported = judgeTask(risky, { sandbox: V1_ECS, gofers: [] }, {}, policy);
    expect(reported.hygiene).toEqual({
      root: true,
      remapped: false,
      writableHostMounts: ['/var/run/docker.sock'],
      privileged: true,
      capAdd: ['NET_ADMIN'],
    });
    expect(reported.hygieneViolations).toEqual([]);
    const strict = judgeTask(
      risky,
      { sandbox: V1_ECS, gofers: [] },
      {},
      { policy: ['root', 'writable-host-mounts', 'privileged', 'capabilities'], usernsRemap: false },
    );
    expect(strict.hygieneViolations).toEqual(['root', 'writable-host-mounts', 'privileged', 'capabilities']);
    // Root remapped by the daemon's userns-remap is not root on the host, unless the container opted out.
    const remapped = judgeTask(risky, { sandbox: V1_ECS, gofers: [] }, {}, { policy: ['root'], usernsRemap: true });
    expect(remapped.hygieneViolations).toEqual([]);
    const optedOut = { ...risky, security: { ...risky.security!, usernsMode: 'host' } };
    expect(judgeTask(optedOut, { sandbox: V1_ECS, gofers: [] }, {}, { policy: ['root'], usernsRemap: true }).hygieneViolations).toEqual([
      'root',
    ]);
    expect(
      judgeTask(
        container({ security: { user: 'app:app', privileged: false, capAdd: [], writableHostMounts: [], usernsMode: '' } }),
        { sandbox: V1_ECS, gofers: [] },
        {},
        policy,
      ).hygiene.root,
    ).toBe(false);
  });
});

describe('task-level limits, as ECS confirms the task', () => {
  const CI = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/ci-1';
  const ARN = `arn:aws:ecs:us-east-1:111122223333:task/prod/${TASK}`;
  const ours = { containerInstanceArn: CI, cluster: 'prod' };
  const labelled = (arn = ARN, o: Partial<ContainerState> = {}) => container({ labels: { [TASK_ARN_LABEL]: arn }, ...o });
  const view = (o: Partial<EcsTaskView> = {}): EcsTaskView => ({
    arn: ARN,
    containerInstanceArn: CI,
    cpu: '512',
    memory: '512',
    runtimeIds: [ID],
    ...o,
  });

  it('turns task-level CPU units and MiB into the cgroup values the agent writes', () => {
    expect(taskLimits({ cpu: '512', memory: '512' })).toEqual({ memoryBytes: 512 << 20, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000 });
    expect(taskLimits({ cpu: '2048' })).toEqual({ cpuQuotaUs: 200_000, cpuPeriodUs: 100_000 });
    expect(taskLimits({ cpu: '0', memory: undefined })).toEqual({});
  });

  it('believes a task label only when ECS lists the container in that task, on this container instance', () => {
    expect(claimOf(container(), view(), ours)).toBeUndefined();
    expect(claimOf(labelled(), view(), {})).toMatchObject({ state: 'unknown' });
    expect(claimOf(labelled(), undefined, ours)).toMatchObject({ state: 'unknown', reason: 'ECS not asked yet' });
    expect(claimOf(labelled(), null, ours)).toMatchObject({ state: 'unconfirmed', reason: 'ECS does not know this task' });
    expect(claimOf(labelled(), view({ containerInstanceArn: `${CI}x` }), ours)).toMatchObject({ state: 'unconfirmed' });
    expect(claimOf(labelled(), view({ runtimeIds: ['other'] }), ours)).toMatchObject({
      state: 'unconfirmed',
      reason: 'ECS does not list this container among the task’s',
    });
    expect(claimOf(labelled(), view(), ours)).toEqual({
      state: 'confirmed',
      arn: ARN,
      taskId: TASK,
      asked: { memoryBytes: 512 << 20, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000 },
    });
    // A label naming another cluster, account or region is not worth an ECS call.
    for (const arn of [
      `arn:aws:ecs:us-east-1:111122223333:task/other/${TASK}`,
      `arn:aws:ecs:us-east-1:999999999999:task/prod/${TASK}`,
      `arn:aws:ecs:eu-west-1:111122223333:task/prod/${TASK}`,
      `arn:aws:ecs:us-east-1:111122223333:task/${TASK}`,
      'arn:aws:ecs:us-east-1:111122223333:task/prod/../x',
    ]) {
      expect(plausibleTaskArn(arn, CI, 'prod'), arn).toBe(false);
      expect(claimOf(labelled(arn), view({ arn }), ours)?.state).toBe('unconfirmed');
    }
    expect(plausibleTaskArn(ARN, CI, 'arn:aws:ecs:us-east-1:111122223333:cluster/prod')).toBe(true);
  });

  it('shows a label that is not a task ID quoted on the task’s status line, never as lines of its own', () => {
    const forged = `arn:aws:ecs:us-east-1:111122223333:task/prod/x\nhealthy: yes`;
    const t = judgeTask(labelled(forged), { sandbox: V1_ECS, gofers: [] }, {}, policy, claimOf(labelled(forged), view(), ours));
    const line = taskLine(t);
    expect(line).not.toContain('\n');
    expect(line).toContain(`; task ${JSON.stringify(forged)}: not a task ARN of cluster prod in this account and region`);
    const good = claimOf(labelled(), view({ cpu: undefined, memory: '512' }), ours);
    expect(
      taskLine(judgeTask(labelled(), { sandbox: V1_ECS, gofers: [] }, filesV1(`/ecs/${TASK}/${ID}`, `/ecs/${TASK}`), policy, good)),
    ).toMatch(new RegExp(`; task ${TASK}: task limits as asked: memory 512 MiB, no CPU quota(;|$)`));
  });

  it('"as asked" is what the task asked: a pids.max it never asked for (a scope’s default) is not shown as asked', () => {
    const t = judgeTask(labelled(), { sandbox: V1_ECS, gofers: [] }, filesV1(`/ecs/${TASK}/${ID}`, `/ecs/${TASK}`), policy, undefined);
    // Without a reading of its use (pids.current), the default is named for what it is.
    const line = taskLine({
      ...t,
      asked: { memoryBytes: 64 << 20 },
      enforced: { memoryBytes: 64 << 20, pids: 4694 },
      problems: [],
      pids: undefined,
    });
    expect(line).toContain("limits as asked: memory 64 MiB, no CPU quota, no pids limit (its cgroup's own pids.max: 4694)");
    expect(line).not.toMatch(/as asked: [^;]*pids 4694/);
  });

  it('holds the task cgroup to the task definition: v1 cgroupfs and v2 systemd', () => {
    const parent = `/ecs/${TASK}`;
    const files = filesV1(`${parent}/${ID}`, parent); // the parent: 512 MiB, no CPU quota
    const claim = claimOf(labelled(), view({ cpu: undefined }), ours);
    expect(judgeTask(labelled(), { sandbox: V1_ECS, gofers: [] }, files, policy, claim).problems).toEqual([]);
    const bigger = claimOf(labelled(), view({ memory: '1024', cpu: '256' }), ours);
    expect(judgeTask(labelled(), { sandbox: V1_ECS, gofers: [] }, files, policy, bigger).problems).toEqual([
      'task-level memory limit 1073741824 asked, 536870912 enforced',
      'task-level CPU quota 0.250 CPUs asked, none enforced',
    ]);
    // Not in the task's cgroup at all (the agent told not to make one, say): the task's limits cannot hold it.
    const elsewhere = `9:memory:/docker/${ID}\n`;
    const plain = labelled(ARN, { resources: {} });
    expect(judgeTask(plain, { sandbox: elsewhere, gofers: [] }, {}, policy, claim).problems).toEqual([
      `task-level limits do not hold it: its cgroup's parent /docker is not its task's (/ecs/${TASK} or ecstasks-${TASK}.slice)`,
    ]);
    // v2: the task's slice holds memory.max and cpu.max.
    const slice = `/sys/fs/cgroup/ecstasks.slice/ecstasks-${TASK}.slice`;
    const v2 = { [`${slice}/memory.max`]: '536870912\n', [`${slice}/cpu.max`]: '50000 100000\n' };
    const c2 = claimOf(labelled(), view(), ours);
    const onV2 = labelled(ARN, { resources: { cgroupParent: `ecstasks-${TASK}.slice` } });
    expect(judgeTask(onV2, { sandbox: V2_SYSTEMD, gofers: [] }, v2, policy, c2)).toMatchObject({
      problems: [],
      parent: { limits: { memoryBytes: 512 << 20, cpuQuotaUs: 50_000 } },
    });
    expect(judgeTask(onV2, { sandbox: V2_SYSTEMD, gofers: [] }, { ...v2, [`${slice}/memory.max`]: 'max\n' }, policy, c2).problems).toEqual([
      'task-level memory limit 536870912 asked, none enforced',
    ]);
    // An unconfirmed claim asks nothing of the parent.
    const unconfirmed = claimOf(labelled(), null, ours);
    expect(judgeTask(plain, { sandbox: elsewhere, gofers: [] }, {}, policy, unconfirmed).problems).toEqual([]);
  });
});

describe('pids under gVisor: the limit counts the sandbox’s own threads', () => {
  const scope = `/sys/fs/cgroup/ecstasks.slice/ecstasks-${TASK}.slice/docker-${ID}.scope`;
  const slice = `/sys/fs/cgroup/ecstasks.slice/ecstasks-${TASK}.slice`;
  const v2 = (pidsMax: string, current: string, slicePids = 'max') => ({
    [`${scope}/pids.max`]: `${pidsMax}\n`,
    [`${scope}/pids.current`]: `${current}\n`,
    [`${slice}/pids.max`]: `${slicePids}\n`,
  });
  const onV2 = (pidsLimit?: number) => container({ resources: { cgroupParent: `ecstasks-${TASK}.slice`, pidsLimit } });

  it('reads pids.current of the sandbox’s own cgroup, v1 and v2', () => {
    expect(cgroupFilesFor(V2_SYSTEMD)).toContain(`${scope}/pids.current`);
    expect(cgroupFilesFor(V1_ECS)).toContain(`/sys/fs/cgroup/pids/ecs/${TASK}/${ID}/pids.current`);
    expect(cgroupFilesFor(V2_SYSTEMD)).not.toContain(`${slice}/pids.current`);
  });

  it('a limit the task asked, within reach of an idle sandbox (27 of 50): tight, said on its status line', () => {
    const t = judgeTask(onV2(50), { sandbox: V2_SYSTEMD, gofers: [] }, v2('50', '27'), policy);
    expect(t.problems).toEqual([]);
    expect(t.pids).toEqual({ current: 27, limit: 50, asked: true, tight: true });
    expect(taskLine(t)).toMatch(/; PIDS TIGHT: 27 pids in use of 50 \(the pids limit asked\); at the limit gVisor ends the whole sandbox$/);
  });

  it('a scope’s default pids.max (systemd’s 4694) is no limit asked, and far from tight; 200 asked is not tight either', () => {
    const t = judgeTask(onV2(), { sandbox: V2_SYSTEMD, gofers: [] }, v2('4694', '27'), policy);
    expect(t.pids).toEqual({ current: 27, limit: 4694, asked: false, tight: false });
    const line = taskLine(t);
    expect(line).toMatch(/limits as asked: no memory limit, no CPU quota, no pids limit; /);
    expect(line).toMatch(/; 27 pids in use of 4694 \(its cgroup’s own pids.max\)$/);
    expect(judgeTask(onV2(200), { sandbox: V2_SYSTEMD, gofers: [] }, v2('200', '27'), policy).pids?.tight).toBe(false);
  });

  it('the lower of the sandbox’s and its task’s limits is the one that ends it', () => {
    const t = judgeTask(onV2(500), { sandbox: V2_SYSTEMD, gofers: [] }, v2('500', '27', '64'), policy);
    expect(t.pids).toEqual({ current: 27, limit: 64, asked: false, tight: true });
  });

  it('tight is a quarter of the limit in use; no limit or no reading: nothing to say', () => {
    expect(pidsHeadroom(25, [100], true)?.tight).toBe(true);
    expect(pidsHeadroom(24, [100], true)?.tight).toBe(false);
    expect(PIDS_TIGHT).toBe(4);
    expect(pidsHeadroom(undefined, [100], true)).toBeUndefined();
    expect(pidsHeadroom(27, [undefined, undefined], false)).toBeUndefined();
    expect(judgeTask(onV2(), { sandbox: V2_SYSTEMD, gofers: [] }, v2('max', '27'), policy).pids).toBeUndefined();
  });
});

describe('a task sandbox a limit ended', () => {
  const dead = (o: Partial<ContainerState>) =>
    container({
      running: false,
      status: 'exited',
      finishedAt: '2026-12-07T04:00:00Z',
      resources: { memory: 64 << 20, pidsLimit: 50 },
      ...o,
    });
  const tight = judgeTask(
    container(),
    { sandbox: V1_ECS, gofers: [] },
    filesV1(`/ecs/${TASK}/${ID}`, `/ecs/${TASK}`, { pids: '50\n' }),
    policy,
  );

  it('the OOM killer as Docker saw it: the memory limit', () => {
    expect(sandboxEnd(dead({ exitCode: 137, oomKilled: true }), undefined, [])).toEqual({
      id: ID,
      name: container().name,
      at: '2026-12-07T04:00:00Z',
      exitCode: 137,
      limit: 'memory',
      reason:
        'killed at its memory limit (64 MiB; exit 137): under gVisor the whole sandbox goes, not only the process that asked for more',
    });
  });

  it('a failed exit while its pids were tight at the last audit: the pids limit', () => {
    expect(tight.pids?.tight).toBe(true);
    expect(sandboxEnd(dead({ exitCode: 2 }), tight, [])).toMatchObject({
      limit: 'pids',
      reason: 'exited 2 with 27 of its 50 pids in use when last audited: at a pids limit gVisor ends the whole sandbox',
    });
  });

  it('anything else is the task’s own end: exit 0, ECS stopping it (143, or 137 without an OOM kill), a failure with pids to spare', () => {
    for (const exitCode of [0, 137, 143]) expect(sandboxEnd(dead({ exitCode }), tight, []), String(exitCode)).toBeUndefined();
    expect(sandboxEnd(dead({ exitCode: 1 }), undefined, [])).toBeUndefined();
    // Another container's OOM kill is not this one's.
    const other = `/ecs/${TASK}/${'ab'.repeat(32)}`;
    expect(sandboxEnd(dead({ exitCode: 137 }), undefined, [{ limitCgroup: other, cgroup: other }])).toBeUndefined();
    const roomy = judgeTask(
      container(),
      { sandbox: V1_ECS, gofers: [] },
      filesV1(`/ecs/${TASK}/${ID}`, `/ecs/${TASK}`, { pids: '1000\n' }),
      policy,
    );
    expect(sandboxEnd(dead({ exitCode: 2 }), roomy, [])).toBeUndefined();
  });

  // Recorded on this machine: Docker 20.10's runc shim left OOMKilled false for a runsc sandbox the
  // kernel killed at its 64 MiB limit; the kernel's log said which cgroup.
  const KMSG = [
    'exe invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0',
    `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=${ID},mems_allowed=0,oom_memcg=/ecs/${TASK}/${ID},task_memcg=/ecs/${TASK}/${ID},task=exe,pid=7996,uid=0`,
    `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/ecstasks.slice/ecstasks-${TASK}.slice,task_memcg=/ecstasks.slice/ecstasks-${TASK}.slice/docker-${ID}.scope,task=exe,pid=812,uid=0`,
    'Memory cgroup out of memory: Killed process 7996 (exe) total-vm:1234kB',
  ];

  it('reads the kernel’s OOM kills: the cgroup whose limit was hit and the killed process’s', () => {
    expect(parseOomKills(KMSG)).toEqual([
      { limitCgroup: `/ecs/${TASK}/${ID}`, cgroup: `/ecs/${TASK}/${ID}` },
      { limitCgroup: `/ecstasks.slice/ecstasks-${TASK}.slice`, cgroup: `/ecstasks.slice/ecstasks-${TASK}.slice/docker-${ID}.scope` },
    ]);
  });

  it('the kernel’s word when Docker missed it: its own limit (v1), or its task’s (v2 slice)', () => {
    const [v1, v2] = parseOomKills(KMSG);
    expect(sandboxEnd(dead({ exitCode: 137 }), undefined, [v1!])).toMatchObject({
      limit: 'memory',
      reason:
        'killed at its memory limit (64 MiB; exit 137): under gVisor the whole sandbox goes, not only the process that asked for more',
    });
    expect(sandboxEnd(dead({ exitCode: 137 }), undefined, [v2!])?.reason).toBe(
      `killed at its task’s memory limit (/ecstasks.slice/ecstasks-${TASK}.slice; exit 137): under gVisor the whole sandbox goes, not only the process that asked for more`,
    );
  });
});
