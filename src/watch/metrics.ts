/** Prometheus metrics of the watch (prom-client). Served on 127.0.0.1 only, and only when a port is set. */
import { Counter, Gauge, Registry } from 'prom-client';

export class WatchMetrics {
  readonly registry = new Registry();
  readonly agentUp = this.gauge('ecs_gvisor_agent_up', 'The agent container is running (1) or not (0).');
  readonly agentConnected = this.gauge('ecs_gvisor_agent_connected', 'ECS reports the agent connected (1) or not (0), as of the last poll.');
  readonly sandboxVerified = this.gauge('ecs_gvisor_sandbox_verified', 'The sandbox is proven and Docker still runs it by default (1) or not (0).');
  readonly auditViolations = this.gauge('ecs_gvisor_audit_violations', 'Running containers outside the gVisor sandbox at the last audit.');
  readonly auditedContainers = this.gauge('ecs_gvisor_audit_containers', 'Running containers checked at the last audit.');
  readonly restarts = new Counter({
    name: 'ecs_gvisor_agent_restarts_total',
    help: 'Agent container restarts by ecs-gvisor (after an exit, an update or an unhealthy spell).',
    registers: [this.registry],
  });
  readonly ecsCalls = new Counter({
    name: 'ecs_gvisor_ecs_api_calls_total',
    help: 'ECS API calls by operation and outcome (ok, throttled, server-error, client-error, network, timeout).',
    labelNames: ['operation', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly repairs = new Counter({
    name: 'ecs_gvisor_drift_repairs_total',
    help: 'Drift found and re-applied, by kind (runtime, agent).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  private verifiedAt?: number;

  constructor(now: () => number) {
    const verifiedAt = () => this.verifiedAt;
    new Gauge({
      name: 'ecs_gvisor_seconds_since_verification',
      help: 'Seconds since the sandbox was last proven (-1 when it is not proven).',
      registers: [this.registry],
      // Computed at scrape time, so it keeps counting between loop iterations.
      collect() {
        const at = verifiedAt();
        this.set(at === undefined ? -1 : Math.max(0, (now() - at) / 1000));
      },
    });
  }

  markVerified(at: number | undefined): void {
    this.verifiedAt = at;
  }

  private gauge(name: string, help: string): Gauge {
    return new Gauge({ name, help, registers: [this.registry] });
  }
}
