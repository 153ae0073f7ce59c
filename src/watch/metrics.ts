/**
 * Prometheus metrics of the watch, served on 127.0.0.1 only and only when a port is set. The figures are
 * kept as plain numbers; prom-client (and the perf_hooks and v8 modules it loads) is loaded the first
 * time they are rendered, so the other commands and an unscraped `run` do not carry it.
 */
import type { Registry } from 'prom-client';

export class GaugeValue {
  value = 0;

  set(value: number): void {
    this.value = value;
  }
}

export class CounterValues<L extends string = never> {
  private readonly values = new Map<string, { labels: Partial<Record<L, string>>; value: number }>();

  inc(labels?: Partial<Record<L, string>> | number, by = 1): void {
    const [l, n] = typeof labels === 'number' ? [{}, labels] : [labels ?? {}, by];
    const key = JSON.stringify(Object.entries(l).sort());
    const v = this.values.get(key) ?? this.values.set(key, { labels: l, value: 0 }).get(key)!;
    v.value += n;
  }

  entries(): Iterable<{ labels: Partial<Record<L, string>>; value: number }> {
    return this.values.values();
  }
}

export class WatchMetrics {
  readonly agentUp = new GaugeValue();
  readonly agentConnected = new GaugeValue();
  readonly sandboxVerified = new GaugeValue();
  readonly auditViolations = new GaugeValue();
  readonly auditedContainers = new GaugeValue();
  readonly restarts = new CounterValues();
  readonly ecsCalls = new CounterValues<'operation' | 'outcome'>();
  readonly repairs = new CounterValues<'kind'>();
  readonly limitKills = new CounterValues<'limit'>();
  readonly tightPidsLimits = new GaugeValue();
  private verifiedAt?: number;
  private registry?: Promise<Registry>;

  constructor(private readonly now: () => number) {}

  markVerified(at: number | undefined): void {
    this.verifiedAt = at;
  }

  /** The exposition text, as of now, and its content type. */
  async render(): Promise<{ text: string; contentType: string }> {
    this.registry ??= this.buildRegistry();
    const registry = await this.registry;
    return { text: await registry.metrics(), contentType: registry.contentType };
  }

  /** prom-client metrics that read the figures above at scrape time. */
  private async buildRegistry(): Promise<Registry> {
    const { Counter, Gauge, Registry } = await import('prom-client');
    const registry = new Registry();
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    const counter = <L extends string>(name: string, help: string, from: CounterValues<L>, labelNames: readonly L[] = []) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          this.reset();
          for (const { labels, value } of from.entries()) this.inc(labels, value);
        },
      });
    gauge('ecs_gvisor_agent_up', 'The agent container is running (1) or not (0).', () => this.agentUp.value);
    gauge(
      'ecs_gvisor_agent_connected',
      'ECS reports the agent connected (1) or not (0), as of the last poll.',
      () => this.agentConnected.value,
    );
    gauge(
      'ecs_gvisor_sandbox_verified',
      'The sandbox is proven, Docker still runs it by default and no container runs outside it (1), or not (0).',
      () => this.sandboxVerified.value,
    );
    gauge(
      'ecs_gvisor_audit_violations',
      'Running containers outside the gVisor sandbox at the last audit.',
      () => this.auditViolations.value,
    );
    gauge('ecs_gvisor_audit_containers', 'Running containers checked at the last audit.', () => this.auditedContainers.value);
    counter(
      'ecs_gvisor_agent_restarts_total',
      'Agent container restarts by ecs-gvisor (after an exit, an update or an unhealthy spell).',
      this.restarts,
    );
    counter(
      'ecs_gvisor_ecs_api_calls_total',
      'ECS API calls by operation and outcome (ok, throttled, server-error, client-error, network, timeout).',
      this.ecsCalls,
      ['operation', 'outcome'],
    );
    counter(
      'ecs_gvisor_sandbox_limit_kills_total',
      'Task sandboxes ended by a limit, by limit (memory: the OOM killer; pids: a pids limit within reach).',
      this.limitKills,
      ['limit'],
    );
    gauge(
      'ecs_gvisor_tight_pids_limits',
      'Running tasks whose pids limit is within reach of their sandbox’s own use, at the last audit.',
      () => this.tightPidsLimits.value,
    );
    counter('ecs_gvisor_drift_repairs_total', 'Drift found and re-applied, by kind (runtime, agent).', this.repairs, ['kind']);
    // Computed at scrape time, so it keeps counting between loop iterations.
    gauge('ecs_gvisor_seconds_since_verification', 'Seconds since the sandbox was last proven (-1 when it is not proven).', () =>
      this.verifiedAt === undefined ? -1 : Math.max(0, (this.now() - this.verifiedAt) / 1000),
    );
    return registry;
  }
}
