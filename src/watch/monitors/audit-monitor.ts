/**
 * The sandbox audit: every running container but ours must run under the gVisor runtime. A violation
 * is logged once, counted, withdraws `verified` from the attributes, and is stopped when configured.
 */
import { ourAgentId } from '../../agent/agent-step.js';
import type { Logger } from '../../logger.js';
import type { DockerPort, HostPort } from '../../ports.js';
import { probeNames } from '../../runtime/sandbox-proof.js';
import type { StateStore } from '../../state-store.js';
import { audit } from '../audit.js';
import type { WatchMetrics } from '../metrics.js';
import type { Monitor } from '../scheduler.js';
import { MINUTES, type WatchContext } from './context.js';

export class AuditMonitor implements Monitor {
  readonly name = 'audit';
  /** Listing, /proc reads, and stopping violators (10 s each, under Docker's deadline). */
  readonly deadlineMs = 15 * MINUTES;

  constructor(
    private readonly deps: { docker: DockerPort; host: HostPort; log: Logger; metrics: WatchMetrics; store: StateStore },
    private readonly ctx: WatchContext,
    private readonly opts: { auditMs: number; runtimeName: string; action: 'report' | 'stop' },
  ) {}

  nextInMs(): number {
    return this.opts.auditMs;
  }

  async run(): Promise<void> {
    const { docker, host, log, metrics } = this.deps;
    const { state, attributes } = this.ctx;
    const running = await docker.listContainers({ all: false });
    const cmdlines = new Map<number, readonly string[] | undefined>();
    await Promise.all(
      running.filter((c) => c.pid > 0).map(async (c) => cmdlines.set(c.pid, await host.cmdline(c.pid).catch(() => undefined))),
    );
    const [probes, agentId] = await Promise.all([probeNames(this.deps.store), ourAgentId(this.deps.store)]);
    const ours = new Set([...running.filter((c) => probes.has(c.name)).map((c) => c.id), ...(agentId ? [agentId] : [])]);
    const result = audit(running, cmdlines, this.opts.runtimeName, ours);
    const known = new Set(state.snap.audit.violations.map((v) => v.id));
    for (const v of result.violations.filter((x) => !known.has(x.id))) {
      log.error(
        { container: v.name, id: v.id.slice(0, 12), runtime: v.runtime, reason: v.reason, action: this.opts.action },
        'sandbox audit: a container runs outside gVisor',
      );
    }
    const stopped: string[] = [];
    if (this.opts.action === 'stop') {
      for (const v of result.violations) {
        await docker.stopContainer(v.id, 10);
        stopped.push(v.id);
        log.warn({ container: v.name, id: v.id.slice(0, 12) }, 'sandbox audit: stopped (ECS_GVISOR_AUDIT_ACTION=stop)');
      }
    }
    const wasViolated = state.snap.audit.violations.length > 0;
    state.snap.audit = {
      checkedAt: state.now(),
      checked: result.checked,
      violations: result.violations,
      action: this.opts.action,
      stopped,
      networks: result.networks,
    };
    metrics.auditViolations.set(result.violations.length);
    metrics.auditedContainers.set(result.checked);
    // The scheduler must know at once: no untrusted task is placed here while a violation stands.
    if (wasViolated !== result.violations.length > 0) await attributes.republish();
  }
}
