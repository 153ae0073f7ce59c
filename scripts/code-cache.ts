/**
 * Build step of scripts/package.mjs, run by the Node that goes into the executable (under qemu for
 * another architecture), with the executable's V8 options: evaluates each chunk in <dir> (<name>.cjs),
 * runs what a cold command runs, and writes <name>.cache, V8's code cache for what was compiled by then.
 *   program, status  `status --json` against nothing (no configuration, no Docker, an empty state dir)
 *   ecs-autoscaling  a call of each client to a local server that answers every request alike
 *   ec2              DescribeTags the same way
 * Every address is on loopback: nothing leaves the build machine.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Script } from 'node:vm';
import { CHUNK_PREFIX, CHUNKS, chunkRequire, lazyBuiltins } from '../src/entry/code-chunks.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: code-cache.cjs <dir with the chunks>');

// chunkRequire compiles each chunk once; the scripts are kept to make their caches afterwards.
const scripts = new Map<string, Script>();
const require_ = chunkRequire(
  (name) => ({ source: readFileSync(join(dir, `${name}.cjs`), 'latin1') }),
  lazyBuiltins((id) => require(id)),
  () => {},
  (name, script) => scripts.set(name, script),
);
const chunk = (name: string) => require_(`${CHUNK_PREFIX}${name}`) as Record<string, new (...a: unknown[]) => unknown>;

async function warmUp(): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      // JSON protocols (ECS) get an empty object; query protocols (Auto Scaling, EC2) an empty XML reply.
      const json = String(req.headers['content-type']).includes('json');
      res.writeHead(200, { 'content-type': json ? 'application/x-amz-json-1.1' : 'text/xml' });
      res.end(json ? '{}' : '<Response><ResponseMetadata><RequestId>warm-up</RequestId></ResponseMetadata></Response>');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const config = {
    region: 'us-east-1',
    endpoint,
    maxAttempts: 1,
    credentials: { accessKeyId: 'AKIDWARMUP', secretAccessKey: 'warm-up' },
    requestHandler: { requestTimeout: 10_000, connectionTimeout: 3_000, throwOnRequestTimeout: true },
  };
  const send = async (client: unknown, command: unknown) => {
    try {
      await (client as { send(c: unknown): Promise<unknown> }).send(command);
    } catch {
      // An empty reply may not satisfy the model: what matters is the code the call ran through.
    }
  };

  const state = mkdtempSync(join(tmpdir(), 'egv-warm-up-'));
  try {
    // A writable that takes everything at once (and says so: status waits until its answer is written).
    const discard = {
      write: (_chunk: unknown, done?: () => void) => {
        done?.();
        return true;
      },
    };
    for (const name of ['program', 'status']) {
      const { main } = chunk(name) as unknown as {
        main(argv: string[], env: Record<string, string>, io: unknown): Promise<number>;
      };
      await main(
        ['status', '--json'],
        {
          ECS_GVISOR_CONFIG: join(state, 'none'),
          ECS_GVISOR_DOCKER_HOST: `unix://${join(state, 'none.sock')}`,
          ECS_GVISOR_STATE_DIR: state,
        },
        { stdout: discard, stderr: discard },
      );
    }
    const ecs = chunk('ecs-autoscaling');
    await send(new ecs.ECSClient!(config), new ecs.DescribeContainerInstancesCommand!({ cluster: 'c', containerInstances: ['i'] }));
    await send(
      new ecs.AutoScalingClient!(config),
      new ecs.RecordLifecycleActionHeartbeatCommand!({ AutoScalingGroupName: 'g', LifecycleHookName: 'h' }),
    );
    const ec2 = chunk('ec2');
    await send(new ec2.EC2Client!(config), new ec2.DescribeTagsCommand!({ Filters: [] }));
  } finally {
    server.close();
    rmSync(state, { recursive: true, force: true });
  }
}

// CommonJS (no top-level await): the chunks' code is compiled by the same kind of script at run time.
void warmUp().then(() => {
  for (const name of CHUNKS) {
    const script = scripts.get(name);
    if (!script) throw new Error(`the warm-up never loaded the ${name} chunk`);
    writeFileSync(join(dir, `${name}.cache`), script.createCachedData());
  }
});
