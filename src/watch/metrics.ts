/**
 * Prometheus metrics of the watch, served when a port is set (on loopback unless an address is given)
 * and written to a node_exporter textfile when a path is. Each metric is a plain number (or labelled
 * numbers) the watch sets; render() writes them in Prometheus's text exposition format (version 0.0.4)
 * as of the scrape. A dozen gauges and counters need no library.
 */
import { VERSION } from '../version.js';

/** Prometheus's text format, escaped: HELP text (backslash, newline) and label values (and quotes). */
const escapeHelp = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (s: string) => escapeHelp(s).replace(/"/g, '\\"');

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  samples(): Array<{ labels: string; value: number }>;
}

export class Gauge implements Metric {
  readonly type = 'gauge';
  value = 0;

  /** `read`: computed at scrape time instead of set; undefined there means no sample (never happened). */
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read?: () => number | undefined,
  ) {}

  set(value: number): void {
    this.value = value;
  }

  samples() {
    const value = this.read ? this.read() : this.value;
    return value === undefined ? [] : [{ labels: '', value }];
  }
}

/** A constant 1 whose labels say what runs: Prometheus's `*_build_info` convention. */
class Info implements Metric {
  readonly type = 'gauge';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labels: Record<string, string>,
  ) {}

  samples() {
    const l = Object.entries(this.labels)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(',');
    return [{ labels: `{${l}}`, value: 1 }];
  }
}

export class Counter<L extends string = never> implements Metric {
  readonly type = 'counter';
  private readonly values = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[] = [],
  ) {}

  /** Add `by` (default 1) to the series of these labels; a counter without labels takes just a number. */
  inc(labels?: Partial<Record<L, string>> | number, by = 1): void {
    const [l, n]: [Partial<Record<L, string>>, number] = typeof labels === 'number' ? [{}, labels] : [labels ?? {}, by];
    // The labels in their declared order: the same series whatever order the caller wrote them in.
    const key = this.labelNames
      .filter((k) => l[k] !== undefined)
      .map((k) => `${k}="${escapeLabel(l[k]!)}"`)
      .join(',');
    this.values.set(key, (this.values.get(key) ?? 0) + n);
  }

  samples() {
    // An unlabelled counter is 0 before its first increment; a labelled one has no series until then.
    if (this.values.size === 0 && this.labelNames.length === 0) return [{ labels: '', value: 0 }];
    return [...this.values].map(([key, value]) => ({ labels: key ? `{${key}}` : '', value }));
  }
}

export class WatchMetrics {
  readonly agentUp = new Gauge('ecs_gvisor_agent_up', 'The agent container is running (1) or not (0).');
  readonly agentConnected = new Gauge('ecs_gvisor_agent_connected', 'ECS reports the agent connected (1) or not (0), as of the last poll.');
  readonly sandboxVerified = new Gauge(
    'ecs_gvisor_sandbox_verified',
    'The sandbox is proven, Docker still runs it by default and no container runs outside it (1), or not (0).',
  );
  readonly auditViolations = new Gauge('ecs_gvisor_audit_violations', 'Running containers outside the gVisor sandbox at the last audit.');
  readonly auditedContainers = new Gauge('ecs_gvisor_audit_containers', 'Running containers checked at the last audit.');
  readonly restarts = new Counter(
    'ecs_gvisor_agent_restarts_total',
    'Agent container restarts by ecs-gvisor (after an exit, an update or an unhealthy spell).',
  );
  readonly awsCalls = new Counter(
    'ecs_gvisor_aws_api_calls_total',
    'AWS API calls by service (ecs, autoscaling, ec2), operation and outcome (ok, throttled, server-error, client-error, network, timeout).',
    ['service', 'operation', 'outcome'],
  );
  readonly limitKills = new Counter(
    'ecs_gvisor_sandbox_limit_kills_total',
    'Task sandboxes ended by a limit, by limit (memory: the OOM killer; pids: a pids limit within reach).',
    ['limit'],
  );
  readonly tightPidsLimits = new Gauge(
    'ecs_gvisor_tight_pids_limits',
    'Running tasks whose pids limit is within reach of their sandbox’s own use, at the last audit.',
  );
  readonly repairs = new Counter('ecs_gvisor_drift_repairs_total', 'Drift found and re-applied, by kind (runtime, agent, network).', [
    'kind',
  ]);
  private verifiedAt?: number;
  // No sample while the sandbox is not proven: absent, not a sentinel (`time() - …` stays meaningful).
  private readonly lastVerification = new Gauge(
    'ecs_gvisor_last_verification_timestamp_seconds',
    'When the sandbox was last proven, in seconds since the Unix epoch; absent while it is not proven.',
    () => (this.verifiedAt === undefined ? undefined : this.verifiedAt / 1000),
  );
  private readonly buildInfo = new Info('ecs_gvisor_build_info', 'The ecs-gvisor version and the Node.js it runs on; always 1.', {
    version: VERSION,
    node: process.versions.node,
  });
  private readonly all: readonly Metric[] = [
    this.agentUp,
    this.agentConnected,
    this.sandboxVerified,
    this.auditViolations,
    this.auditedContainers,
    this.restarts,
    this.awsCalls,
    this.limitKills,
    this.tightPidsLimits,
    this.repairs,
    this.lastVerification,
    this.buildInfo,
  ];

  markVerified(at: number | undefined): void {
    this.verifiedAt = at;
  }

  /** The exposition text, as of now, and its content type. */
  async render(): Promise<{ text: string; contentType: string }> {
    const lines: string[] = [];
    for (const m of this.all) {
      lines.push(`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`);
      for (const s of m.samples()) lines.push(`${m.name}${s.labels} ${s.value}`);
    }
    return { text: `${lines.join('\n')}\n`, contentType: 'text/plain; version=0.0.4; charset=utf-8' };
  }
}
