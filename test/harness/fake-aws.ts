/**
 * Fake AWS endpoints as real HTTP servers on 127.0.0.1, driven through the real SDK clients: ECS (JSON
 * 1.1 protocol), Auto Scaling (query protocol) and IMDSv2. They keep state, count every call with its
 * outcome, and misbehave on request (throttle, 5xx, slow).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface FakeInstance {
  /** The EC2 instance the agent registered from (its instance identity document), when it sent one. */
  ec2InstanceId?: string;
  status: string;
  agentConnected: boolean;
  healthStatus?: string;
  runningTasksCount: number;
  attributes: Record<string, string>;
}

export type Behaviour = 'ok' | 'throttle' | 'server-error' | { slowMs: number } | { raw: string; status?: number; contentType?: string };

export interface Call {
  operation: string;
  at: number;
  outcome: 'ok' | 'throttled' | 'server-error' | 'slow' | 'raw';
  body: Record<string, unknown>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Listen on 127.0.0.1 (a free port unless one is given: the simulated instance uses fixed ones). */
async function listen(server: Server, port = 0): Promise<string> {
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  const addr = server.address() as { port: number };
  return `http://127.0.0.1:${addr.port}`;
}

/** A token bucket like ECS's read bucket (burst, then `ratePerSec`), on the given clock. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly burst: number,
    private readonly ratePerSec: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A task as DescribeTasks reports it (task-level CPU units and MiB as strings, its Docker IDs). */
export interface FakeTask {
  containerInstanceArn: string;
  cpu?: string;
  memory?: string;
  runtimeIds: string[];
}

export class FakeEcs {
  readonly instances = new Map<string, FakeInstance>();
  readonly tasks = new Map<string, FakeTask>();
  readonly calls: Call[] = [];
  /** Decides how each call is answered; default: normally. */
  behaviour: (operation: string, n: number) => Behaviour = () => 'ok';
  bucket?: TokenBucket;
  /**
   * The EC2 instance ECS reports for an instance that has none of its own: stand-in agents register
   * without an identity document (the real agent sends one), as if from this instance.
   */
  assumedEc2InstanceId?: string;
  /** Runs before each instance is described (tasks leaving a draining instance, say). */
  onDescribe: (i: FakeInstance) => void = () => undefined;
  /** The ACS endpoint DiscoverPollEndpoint names (a fake ACS's URL); default a closed port: the agent only logs reconnects. */
  acsEndpoint = 'https://127.0.0.1:1/';
  /** With a fake ACS: whether the agent of an ARN holds its connection, which `agentConnected` then reports, as ECS's does. */
  acsConnected?: (arn: string) => boolean;
  url = '';
  private server?: Server;

  /** `sleep` waits out a slow answer: real time by default, a test's simulated clock otherwise. */
  constructor(
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.url = await listen(this.server, port);
    return this;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  count(operation: string, outcome?: Call['outcome']): number {
    return this.calls.filter((c) => c.operation === operation && (!outcome || c.outcome === outcome)).length;
  }

  /** Forget instances and calls, behave normally again (between tests). */
  reset(): void {
    this.instances.clear();
    this.tasks.clear();
    this.calls.length = 0;
    this.behaviour = () => 'ok';
    this.onDescribe = () => undefined;
    this.acsEndpoint = 'https://127.0.0.1:1/';
    this.acsConnected = undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = JSON.parse((await readBody(req)) || '{}') as Record<string, unknown>;
    const operation =
      String(req.headers['x-amz-target'] ?? '')
        .split('.')
        .pop() ?? '';
    const n = this.calls.length;
    const b = this.bucket && !this.bucket.take() ? 'throttle' : this.behaviour(operation, n);
    const send = (status: number, doc: unknown) => {
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': `req-${n}` });
      res.end(JSON.stringify(doc));
    };
    if (b === 'throttle') {
      this.calls.push({ operation, at: this.now(), outcome: 'throttled', body });
      return send(400, { __type: 'ThrottlingException', message: 'Rate exceeded' });
    }
    if (b === 'server-error') {
      this.calls.push({ operation, at: this.now(), outcome: 'server-error', body });
      return send(500, { __type: 'ServerException', message: 'Internal failure' });
    }
    if (typeof b === 'object' && 'raw' in b) {
      // A malformed answer: whatever bytes, status and content type the test chose.
      this.calls.push({ operation, at: this.now(), outcome: 'raw', body });
      res.writeHead(b.status ?? 200, { 'content-type': b.contentType ?? 'application/x-amz-json-1.1', 'x-amzn-requestid': `req-${n}` });
      return void res.end(b.raw);
    }
    if (typeof b === 'object') {
      this.calls.push({ operation, at: this.now(), outcome: 'slow', body });
      await this.sleep(b.slowMs);
    } else {
      this.calls.push({ operation, at: this.now(), outcome: 'ok', body });
    }
    switch (operation) {
      case 'DescribeContainerInstances': {
        const arns = body.containerInstances as string[];
        for (const a of arns) if (this.instances.has(a)) this.onDescribe(this.instances.get(a)!);
        const found = arns.filter((a) => this.instances.has(a));
        return send(200, {
          containerInstances: found.map((arn) => {
            const i = this.instances.get(arn)!;
            return {
              containerInstanceArn: arn,
              ...((i.ec2InstanceId ?? this.assumedEc2InstanceId) ? { ec2InstanceId: i.ec2InstanceId ?? this.assumedEc2InstanceId } : {}),
              status: i.status,
              agentConnected: i.agentConnected && (this.acsConnected?.(arn) ?? true),
              runningTasksCount: i.runningTasksCount,
              pendingTasksCount: 0,
              attributes: Object.entries(i.attributes).map(([name, value]) => ({ name, value })),
              ...(i.healthStatus ? { healthStatus: { overallStatus: i.healthStatus } } : {}),
            };
          }),
          failures: arns.filter((a) => !this.instances.has(a)).map((arn) => ({ arn, reason: 'MISSING' })),
        });
      }
      case 'DescribeTasks': {
        const arns = body.tasks as string[];
        const found = arns.filter((a) => this.tasks.has(a));
        return send(200, {
          tasks: found.map((taskArn) => {
            const t = this.tasks.get(taskArn)!;
            return {
              taskArn,
              clusterArn: body.cluster,
              containerInstanceArn: t.containerInstanceArn,
              ...(t.cpu ? { cpu: t.cpu } : {}),
              ...(t.memory ? { memory: t.memory } : {}),
              lastStatus: 'RUNNING',
              containers: t.runtimeIds.map((runtimeId, i) => ({ name: `c${i}`, runtimeId, taskArn, lastStatus: 'RUNNING' })),
            };
          }),
          failures: arns.filter((a) => !this.tasks.has(a)).map((arn) => ({ arn, reason: 'MISSING' })),
        });
      }
      case 'DiscoverPollEndpoint':
        // Where the real agent opens its ACS and TCS websockets (TCS: a closed port, so it only logs reconnects).
        return send(200, {
          endpoint: this.acsEndpoint,
          telemetryEndpoint: 'https://127.0.0.1:1/',
          serviceConnectEndpoint: 'https://127.0.0.1:1/',
        });
      case 'RegisterContainerInstance': {
        // The agent registers (again, when it names its ARN): ACTIVE and connected. The attributes it sends
        // are kept and answered back (the real agent exits 5 when they are not).
        const cluster = String(body.cluster ?? 'default');
        const n = [...this.instances.keys()].filter((k) => k.includes(`/${cluster}/`)).length;
        const arn = String(
          body.containerInstanceArn ??
            `arn:aws:ecs:us-east-1:111122223333:container-instance/${cluster}/${n.toString(16).padStart(32, '0')}`,
        );
        const i = this.instances.get(arn);
        const sent = Object.fromEntries(
          ((body.attributes ?? []) as Array<{ name: string; value?: string }>).map((a) => [a.name, a.value ?? '']),
        );
        const doc =
          typeof body.instanceIdentityDocument === 'string' && body.instanceIdentityDocument
            ? (JSON.parse(body.instanceIdentityDocument) as { instanceId?: string })
            : undefined;
        this.instances.set(arn, {
          runningTasksCount: 0,
          ...i,
          ...(doc?.instanceId ? { ec2InstanceId: doc.instanceId } : {}),
          attributes: { ...i?.attributes, ...sent },
          status: i?.status === 'DRAINING' ? 'DRAINING' : 'ACTIVE',
          agentConnected: true,
        });
        const now = this.instances.get(arn)!;
        return send(200, {
          containerInstance: {
            containerInstanceArn: arn,
            status: now.status,
            ...(now.ec2InstanceId ? { ec2InstanceId: now.ec2InstanceId } : {}),
            attributes: Object.entries(now.attributes).map(([name, value]) => ({ name, value })),
          },
        });
      }
      case 'UpdateContainerInstancesState': {
        const arns = body.containerInstances as string[];
        const found = arns.filter((a) => this.instances.has(a));
        for (const a of found) this.instances.get(a)!.status = String(body.status);
        return send(200, {
          containerInstances: found.map((arn) => ({ containerInstanceArn: arn, status: this.instances.get(arn)!.status })),
          failures: arns.filter((a) => !this.instances.has(a)).map((arn) => ({ arn, reason: 'MISSING' })),
        });
      }
      case 'PutAttributes':
      case 'DeleteAttributes': {
        const attrs = body.attributes as Array<{ name: string; value?: string; targetId: string }>;
        for (const a of attrs) {
          const i = this.instances.get(a.targetId);
          if (!i) return send(400, { __type: 'TargetNotFoundException', message: `no target ${a.targetId}` });
          if (operation === 'PutAttributes') i.attributes[a.name] = a.value ?? '';
          else delete i.attributes[a.name];
        }
        return send(200, { attributes: attrs });
      }
      case 'SubmitTaskStateChange':
      case 'SubmitContainerStateChange':
      case 'SubmitAttachmentStateChanges':
        // The real agent reports its tasks' state (what ECS learns of them): acknowledged.
        return send(200, { acknowledgment: 'ok' });
      default:
        return send(400, { __type: 'InvalidParameterException', message: `unknown operation ${operation}` });
    }
  }
}

export type AsBehaviour = 'ok' | 'throttle';

/**
 * Auto Scaling (query protocol, XML). Lifecycle actions are modelled: `pend` opens one for an instance,
 * heartbeats and completions of an action that is not pending get ValidationError, as AWS answers.
 */
export class FakeAutoScaling {
  readonly calls: Array<{ params: Record<string, string>; Action: string; at: number; outcome: string }> = [];
  /** Pending (or finished) lifecycle actions by group/hook/instance. */
  readonly actions = new Map<string, { result?: string; heartbeats: number }>();
  behaviour: (action: string, n: number) => AsBehaviour = () => 'ok';
  url = '';
  private server?: Server;

  constructor(private readonly now: () => number = Date.now) {}

  /** Open a lifecycle action, as the group does when an instance enters Pending:Wait or Terminating:Wait. */
  pend(group: string, hook: string, instanceId: string): void {
    this.actions.set(`${group}/${hook}/${instanceId}`, { heartbeats: 0 });
  }

  action(group: string, hook: string, instanceId: string): { result?: string; heartbeats: number } | undefined {
    return this.actions.get(`${group}/${hook}/${instanceId}`);
  }

  count(action: string, outcome?: string): number {
    return this.calls.filter((c) => c.Action === action && (!outcome || c.outcome === outcome)).length;
  }

  reset(): void {
    this.calls.length = 0;
    this.actions.clear();
    this.behaviour = () => 'ok';
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      void readBody(req).then((text) => {
        const params = Object.fromEntries(new URLSearchParams(text));
        const action = params.Action ?? '';
        const n = this.calls.length;
        const fail = (status: number, code: string, message: string, outcome: string) => {
          this.calls.push({ params, Action: action, at: this.now(), outcome });
          res.writeHead(status, { 'content-type': 'text/xml' });
          res.end(
            `<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r-${n}</RequestId></ErrorResponse>`,
          );
        };
        if (this.behaviour(action, n) === 'throttle') return fail(400, 'Throttling', 'Rate exceeded', 'throttled');
        if (action === 'CompleteLifecycleAction' || action === 'RecordLifecycleActionHeartbeat') {
          const a = this.action(params.AutoScalingGroupName!, params.LifecycleHookName!, params.InstanceId!);
          if (!a || a.result)
            return fail(400, 'ValidationError', `No active Lifecycle Action found with instance ID ${params.InstanceId}`, 'validation');
          if (action === 'CompleteLifecycleAction') a.result = params.LifecycleActionResult;
          else a.heartbeats++;
        }
        this.calls.push({ params, Action: action, at: this.now(), outcome: 'ok' });
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(
          `<${action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><${action}Result/><ResponseMetadata><RequestId>r-${n}</RequestId></ResponseMetadata></${action}Response>`,
        );
      });
    });
    this.url = await listen(this.server, port);
    return this;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** EC2 (ec2 query protocol): DescribeTags over a tag table. */
export class FakeEc2 {
  readonly tags: Array<{ resourceId: string; key: string; value: string }> = [];
  readonly calls: Array<Record<string, string>> = [];
  url = '';
  private server?: Server;

  /** Forget calls (between tests); the tags stay. */
  reset(): void {
    this.calls.length = 0;
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      void readBody(req).then((text) => {
        const params = Object.fromEntries(new URLSearchParams(text));
        this.calls.push(params);
        const filters = new Map<string, string[]>();
        for (let i = 1; params[`Filter.${i}.Name`]; i++) {
          const values: string[] = [];
          for (let j = 1; params[`Filter.${i}.Value.${j}`]; j++) values.push(params[`Filter.${i}.Value.${j}`]!);
          filters.set(params[`Filter.${i}.Name`]!, values);
        }
        const match = (t: { resourceId: string; key: string }) =>
          (!filters.has('resource-id') || filters.get('resource-id')!.includes(t.resourceId)) &&
          (!filters.has('key') || filters.get('key')!.includes(t.key));
        const items = this.tags
          .filter(match)
          .map(
            (t) =>
              `<item><resourceId>${t.resourceId}</resourceId><resourceType>instance</resourceType><key>${t.key}</key><value>${t.value}</value></item>`,
          )
          .join('');
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(
          `<DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-${this.calls.length}</requestId><tagSet>${items}</tagSet></DescribeTagsResponse>`,
        );
      });
    });
    this.url = await listen(this.server, port);
    return this;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** IMDSv2: a token from PUT /latest/api/token, required on every GET. */
export class FakeImds {
  readonly paths = new Map<string, string>();
  readonly requests: Array<{ method: string; path: string; token?: string }> = [];
  /** Per path: answer slowly (past the client's timeout) or with an error status. */
  readonly faults = new Map<string, { delayMs?: number; status?: number }>();
  /** What PUT /latest/api/token answers instead of a fresh token (a malformed one). */
  tokenReply?: string;
  private readonly tokens = new Set<string>();
  url = '';
  private server?: Server;

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      const token = req.headers['x-aws-ec2-metadata-token'] as string | undefined;
      this.requests.push({ method: req.method ?? '', path: req.url ?? '', token });
      if (req.method === 'PUT' && req.url === '/latest/api/token') {
        const t = this.tokenReply ?? `token-${this.tokens.size + 1}`;
        this.tokens.add(t);
        // IMDS states the token's lifetime; the Go SDK (the real agent's) refuses a token without it.
        res
          .writeHead(200, { 'x-aws-ec2-metadata-token-ttl-seconds': String(req.headers['x-aws-ec2-metadata-token-ttl-seconds'] ?? 21600) })
          .end(t);
        return;
      }
      if (!token || !this.tokens.has(token)) return void res.writeHead(401).end();
      const fault = this.faults.get(req.url ?? '');
      if (fault?.delayMs) {
        setTimeout(() => res.writeHead(fault.status ?? 200).end(this.paths.get(req.url ?? '') ?? ''), fault.delayMs);
        return;
      }
      if (fault?.status) return void res.writeHead(fault.status).end();
      const v = this.paths.get(req.url ?? '');
      if (v === undefined) return void res.writeHead(404).end();
      res.writeHead(200).end(v);
    });
    this.url = await listen(this.server, port);
    return this;
  }

  /** Forget paths, faults and requests (between tests). */
  reset(): void {
    this.paths.clear();
    this.faults.clear();
    this.tokenReply = undefined;
    this.requests.length = 0;
  }

  /** Forget issued tokens (as if they expired). */
  revokeTokens(): void {
    this.tokens.clear();
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * A stand-in introspection endpoint: like the agent, nothing listens on its port until it registers
 * (connection refused), then /v1/metadata answers.
 */
export class FakeIntrospection {
  url = '';
  private port = 0;
  private server?: Server;

  /** Reserve a free port on 127.0.0.1 (refusing connections until register). */
  async reserve(): Promise<this> {
    const probe = createServer();
    this.url = await listen(probe);
    this.port = Number(new URL(this.url).port);
    await new Promise<void>((r) => probe.close(() => r()));
    return this;
  }

  async register(meta: { Cluster: string; ContainerInstanceArn: string; Version?: string }): Promise<void> {
    await this.stop();
    this.server = createServer((req, res) => {
      if (req.url !== '/v1/metadata') return void res.writeHead(404).end();
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ Version: 'Amazon ECS Agent - v1.0.0 (stand-in)', ...meta }));
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
  }

  stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    return new Promise((resolve) => {
      if (!s) return resolve();
      s.closeAllConnections();
      s.close(() => resolve());
    });
  }
}

export const ARN = 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/0123456789abcdef0123456789abcdef';
