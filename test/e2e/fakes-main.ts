/**
 * The AWS side of a simulated instance, run inside it (bundled to one file, started by a unit), so all
 * traffic stays on the instance's loopback: ECS, Auto Scaling, EC2 and IMDSv2 on fixed ports, plus a
 * control port the tests drive through `docker exec … node fakes.mjs ctl METHOD PATH [JSON]`.
 * State is saved under /var/lib/e2e-fakes, so it outlives a reboot of the instance.
 *
 *   node fakes.mjs [SEED.json]     serve (the seed applies on the first boot only)
 *   node fakes.mjs ctl GET /state  print the state; POST /imds {path: value|null}, POST /as/pend
 *                                  {hook}, POST /ecs/instance {arn?, ...fields}, POST /ecs/task {arn, ...task}
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { FakeAutoScaling, FakeEc2, FakeEcs, FakeImds, type FakeInstance, type FakeTask } from '../harness/fake-aws.js';
import { E2E_PORTS, type FakesSeed, type FakesState } from './ports.js';

const STATE = '/var/lib/e2e-fakes/state.json';

async function serve(seedFile: string | undefined): Promise<void> {
  const ecs = await new FakeEcs().start(E2E_PORTS.ecs);
  const as = await new FakeAutoScaling().start(E2E_PORTS.autoScaling);
  const ec2 = await new FakeEc2().start(E2E_PORTS.ec2);
  const imds = await new FakeImds().start(E2E_PORTS.imds);
  let seed: FakesSeed | undefined;

  const snapshot = (): FakesState => ({
    seed: seed!,
    ecs: { instances: Object.fromEntries(ecs.instances), calls: ecs.calls },
    autoScaling: { actions: Object.fromEntries(as.actions), calls: as.calls },
    imds: { paths: Object.fromEntries(imds.paths), requests: imds.requests.length },
    ec2: { calls: ec2.calls },
  });
  const save = () => {
    mkdirSync('/var/lib/e2e-fakes', { recursive: true });
    writeFileSync(`${STATE}.tmp`, JSON.stringify(snapshot()));
    renameSync(`${STATE}.tmp`, STATE);
  };

  if (existsSync(STATE)) {
    const s = JSON.parse(readFileSync(STATE, 'utf8')) as FakesState;
    seed = s.seed;
    for (const [k, v] of Object.entries(s.ecs.instances)) ecs.instances.set(k, v);
    ecs.calls.push(...s.ecs.calls);
    for (const [k, v] of Object.entries(s.autoScaling.actions)) as.actions.set(k, v);
    as.calls.push(...s.autoScaling.calls);
    for (const [k, v] of Object.entries(s.imds.paths)) imds.paths.set(k, v);
    ec2.calls.push(...(s.ec2?.calls ?? []));
  } else {
    seed = JSON.parse(readFileSync(seedFile ?? '/opt/e2e/fakes.json', 'utf8')) as FakesSeed;
    for (const [k, v] of Object.entries(seed.imds)) imds.paths.set(k, v);
    for (const hook of seed.pend) as.pend(seed.group, hook, seed.instanceId);
  }
  // The stand-in agent registers without an identity document: ECS knows it as this instance all the same.
  ecs.assumedEc2InstanceId = seed.instanceId;
  // The group's tag, as Auto Scaling puts it on its instances (IMDS does not carry tags here).
  ec2.tags.push({ resourceId: seed.instanceId, key: 'aws:autoscaling:groupName', value: seed.group });
  // Tasks leave a draining instance one per look, as ECS stops them.
  ecs.onDescribe = (i: FakeInstance) => {
    if (i.status === 'DRAINING' && i.runningTasksCount > 0) i.runningTasksCount--;
  };
  // Saved at shutdown (a reboot of the instance stops this unit first) and after every control request.
  process.on('SIGTERM', () => {
    save();
    process.exit(0);
  });
  save();

  const control = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
      const route = `${req.method} ${req.url}`;
      if (route === 'POST /imds') {
        for (const [k, v] of Object.entries(body)) v === null ? imds.paths.delete(k) : imds.paths.set(k, String(v));
      } else if (route === 'POST /as/pend') {
        as.pend(seed!.group, String(body.hook), seed!.instanceId);
      } else if (route === 'POST /ecs/instance') {
        const { arn = [...ecs.instances.keys()][0], ...fields } = body;
        const i = ecs.instances.get(String(arn));
        if (!i) return void res.writeHead(404).end(`no instance ${String(arn)}\n`);
        Object.assign(i, fields);
      } else if (route === 'POST /ecs/task') {
        // A task as ECS would describe it (DescribeTasks): where it runs, its task-level limits, its containers.
        const { arn, ...task } = body as unknown as { arn: string } & FakeTask;
        ecs.tasks.set(String(arn), task);
      } else if (route !== 'GET /state') {
        return void res.writeHead(404).end(`no route ${route}\n`);
      }
      save();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot()));
    });
  });
  await new Promise<void>((r) => control.listen(E2E_PORTS.control, '127.0.0.1', () => r()));
  // Type=notify: systemd starts what comes after only once every port listens.
  if (process.env.NOTIFY_SOCKET) execFileSync('systemd-notify', ['--ready']);
}

async function ctl(method: string, path: string, json?: string): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${E2E_PORTS.control}${path}`, {
    method,
    body: json,
    headers: json ? { 'content-type': 'application/json' } : {},
  });
  process.stdout.write(await res.text());
  if (!res.ok) process.exitCode = 1;
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'ctl') await ctl(rest[0]!, rest[1]!, rest[2]);
else await serve(cmd);
