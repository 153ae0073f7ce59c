/**
 * The agent's ACS connection as the instance itself sees it (acs-evidence.ts), as often as the agent's
 * introspection is asked and without an AWS call: the lines its log gained since the last round, and the
 * connections the agent's processes hold in the kernel. Only lines about the current registration,
 * written since the agent container started, count: the log outlives agents and registrations. A log
 * that cannot be read or believed makes the evidence unknown (ECS is then polled), never stale.
 */

import type { LogTailPort } from '../../adapters/log-tail.js';
import {
  type AcsEndpoint,
  type AcsEvent,
  type AcsLocal,
  acsEndpointOf,
  acsEvents,
  judgeAcs,
  type KernelWord,
} from '../../agent/acs-evidence.js';
import type { HostPort } from '../../ports.js';
import type { Observation } from '../reactor.js';
import type { Monitor } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';

/** A name's addresses are looked up again after this long (DNS may move the endpoint). */
const RESOLVE_MS = 5 * 60_000;
/** Lines stamped up to this long before the container's start still count (clocks, rounding). */
const START_SLACK_MS = 2_000;

export interface AcsMonitorDeps {
  log: LogTailPort;
  host: Pick<HostPort, 'connectionsOf' | 'childrenOf'>;
  /** The addresses a host name resolves to here (the agent shares the host's network and resolver). */
  resolve: (name: string) => Promise<string[]>;
}

export class AcsMonitor implements Monitor {
  readonly name = 'acs';
  readonly deadlineMs = 60_000;
  private last?: AcsEvent;
  private endpoint?: AcsEndpoint;
  private addresses?: { name: string; at: number; list: string[] };
  private seen?: { state: AcsLocal; since: number };

  constructor(
    private readonly deps: AcsMonitorDeps,
    private readonly state: Pick<WatchState, 'obs' | 'ms' | 'recordError'>,
    private readonly opts: { everyMs: number },
  ) {}

  nextInMs(): number {
    return this.opts.everyMs;
  }

  async run(): Promise<Observation | undefined> {
    let text: string;
    try {
      text = await this.deps.log.read();
    } catch (err) {
      this.state.recordError('acs', err);
      this.last = undefined;
      return this.observe({ state: 'unknown', why: 'the agent’s log cannot be read or believed (see the last errors)' });
    }
    const agent = this.state.obs.agent;
    const arn = this.state.obs.metadata?.containerInstanceArn;
    const startedMs = agent?.startedAt ? Date.parse(agent.startedAt) - START_SLACK_MS : Number.NEGATIVE_INFINITY;
    const fresh = (e: AcsEvent) => (!e.arn || !arn || e.arn === arn) && (!e.at || Date.parse(e.at) >= startedMs);
    // A new container or registration: what was read before was about another.
    if (this.last && !fresh(this.last)) this.last = undefined;
    this.last = acsEvents(text).filter(fresh).at(-1) ?? this.last;
    this.endpoint = acsEndpointOf(text) ?? this.endpoint;
    if (!arn || !agent?.running) return undefined;
    const kernel = this.last?.state === 'connected' ? await this.kernel(agent.pid) : 'unknown';
    return this.observe(judgeAcs(this.last, kernel));
  }

  private observe({ state, why }: { state: AcsLocal; why: string }): Observation {
    if (this.seen?.state !== state) this.seen = { state, since: this.state.ms() };
    return { kind: 'acs', state, why, since: this.seen.since };
  }

  /** Whether the agent's processes hold an established connection to the ACS endpoint. */
  private async kernel(pid: number | undefined): Promise<KernelWord> {
    const ep = this.endpoint;
    if (!ep || !pid) return 'unknown';
    const { host } = this.deps;
    const pids = [pid, ...(await host.childrenOf(pid))];
    const held = (await Promise.all(pids.map((p) => host.connectionsOf(p)))).flat().filter((c) => c.remotePort === ep.port);
    if (!held.length) return 'none';
    let list = await this.resolved(ep.host, false);
    if (!held.some((c) => list.includes(c.remoteAddress))) list = await this.resolved(ep.host, true);
    return held.some((c) => list.includes(c.remoteAddress)) ? 'held' : 'none';
  }

  private async resolved(name: string, again: boolean): Promise<string[]> {
    const now = this.state.ms();
    const a = this.addresses;
    if (a && a.name === name && (!again || now - a.at < this.opts.everyMs) && now - a.at < RESOLVE_MS) return a.list;
    const list = /^[\d.]+$|:/.test(name) ? [name] : await this.deps.resolve(name).catch(() => a?.list ?? []);
    this.addresses = { name, at: now, list };
    return list;
  }
}
