/**
 * The `network` step: route_localnet and the rules of network-rules.ts, each checked with `iptables -C`
 * before it is added (ecs-init appends without checking and duplicates them on every start).
 */
import { loadEcsConfigs } from '../agent/ecs-config.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { CommandResult, CommandsPort, FilesPort } from '../ports.js';
import type { StateStore } from '../state-store.js';
import { defaultRouteInterface, type NetRule, planNetworkRules, ruleArgv } from './network-rules.js';

export const NETWORK_STATE = 'network.json';
const ROUTE_LOCALNET = '/proc/sys/net/ipv4/conf/all/route_localnet';

interface NetworkState {
  /** route_localnet before we set it, when we changed it. */
  routeLocalnetBefore?: string;
  /** Every rule this host ever got from us (rollback removes these). */
  rules: NetRule[];
}

export interface NetworkPlan {
  routeLocalnet: { now: string | undefined; change: boolean };
  rules: Array<NetRule & { present: boolean }>;
}

export class NetworkStep {
  /** Why IPv6 could not be filtered, last time (warned once). */
  private v6Problem?: string;

  constructor(
    private readonly deps: { commands: CommandsPort; files: FilesPort; state: StateStore; log: Logger },
    private readonly opts: { iptables: string; ecsConfig: string; instanceConfig: string; blockTaskImds: boolean },
  ) {}

  /** ip6tables beside the configured iptables (same directory, same naming). */
  private get ip6tables(): string {
    return this.opts.iptables.replace(/iptables([^/]*)$/, 'ip6tables$1');
  }

  private async iptables(args: string[], family?: 6): Promise<number> {
    const program = family === 6 ? this.ip6tables : this.opts.iptables;
    let r: CommandResult;
    try {
      r = await this.deps.commands.run(program, args, { timeoutMs: 30_000 });
    } catch (err) {
      throw new EcsGvisorError('IPTABLES_FAILED', `${program} cannot be run (${messageOf(err)}); install iptables.`, { cause: err });
    }
    if (r.code > 1) {
      throw new EcsGvisorError(
        'IPTABLES_FAILED',
        `${program} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}.`,
      );
    }
    return r.code;
  }

  /** The chain for the IPv6 metadata rule, or undefined (with why) when this host cannot filter IPv6. */
  private async imds6Chain(): Promise<{ chain?: string; why?: string }> {
    try {
      if ((await this.iptables(['-w', '-t', 'filter', '-S', 'DOCKER-USER'], 6)) === 0) return { chain: 'DOCKER-USER' };
      if ((await this.iptables(['-w', '-t', 'filter', '-S', 'FORWARD'], 6)) === 0) return { chain: 'FORWARD' };
      return { why: `${this.ip6tables} has no FORWARD chain` };
    } catch (err) {
      return { why: messageOf(err) };
    }
  }

  async desired(): Promise<NetRule[]> {
    const vars = (await loadEcsConfigs(this.deps.files, this.opts.instanceConfig, this.opts.ecsConfig)).merged;
    const hasDockerUser = (await this.iptables(['-w', '-t', 'filter', '-S', 'DOCKER-USER']).catch(() => 1)) === 0;
    const v6 = this.opts.blockTaskImds ? await this.imds6Chain() : {};
    if (v6.why && v6.why !== this.v6Problem)
      this.deps.log.warn(
        { problem: v6.why },
        'IPv6 instance metadata (fd00:ec2::254) cannot be blocked for bridge tasks: this host cannot filter IPv6',
      );
    this.v6Problem = v6.why;
    return planNetworkRules({
      skipLocalhostFilter: vars.get('ECS_SKIP_LOCALHOST_TRAFFIC_FILTER') === 'true',
      allowOffhostIntrospection: vars.get('ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS') === 'true',
      introspectionInterface:
        vars.get('ECS_OFFHOST_INTROSPECTION_INTERFACE_NAME') ||
        defaultRouteInterface(await this.deps.files.readText('/proc/net/route')) ||
        'eth0',
      blockTaskImds: this.opts.blockTaskImds,
      imdsChain: hasDockerUser ? 'DOCKER-USER' : 'FORWARD',
      imds6Chain: v6.chain,
    });
  }

  private async routeLocalnet(): Promise<string | undefined> {
    return (await this.deps.files.readText(ROUTE_LOCALNET))?.trim();
  }

  async plan(): Promise<NetworkPlan> {
    const now = await this.routeLocalnet();
    const rules = [];
    for (const r of await this.desired()) rules.push({ ...r, present: (await this.iptables(ruleArgv(r, 'check'), r.family)) === 0 });
    return { routeLocalnet: { now, change: now !== '1' }, rules };
  }

  async apply(): Promise<{ added: number; present: number }> {
    const log = this.deps.log;
    const saved = (await this.deps.state.read<NetworkState>(NETWORK_STATE)) ?? { rules: [] };
    const now = await this.routeLocalnet();
    if (now !== '1') {
      // Recorded before the change, so a crash between the two still lets rollback put it back.
      if (saved.routeLocalnetBefore === undefined && now !== undefined) saved.routeLocalnetBefore = now;
      await this.deps.state.write(NETWORK_STATE, saved);
      await this.deps.files.overwrite(ROUTE_LOCALNET, '1\n');
      log.info({ before: now }, 'net.ipv4.conf.all.route_localnet set to 1');
    }
    let added = 0;
    let present = 0;
    for (const r of await this.desired()) {
      if (!saved.rules.some((s) => sameRule(s, r))) {
        saved.rules.push(r);
        await this.deps.state.write(NETWORK_STATE, saved); // before adding: rollback must know every rule of ours
      }
      if ((await this.iptables(ruleArgv(r, 'check'), r.family)) === 0) {
        present++;
        continue;
      }
      const code = await this.iptables(ruleArgv(r, 'add'), r.family);
      if (code !== 0) throw new EcsGvisorError('IPTABLES_FAILED', `iptables could not add the rule for ${r.why} to ${r.table}/${r.chain}.`);
      added++;
      log.info({ table: r.table, chain: r.chain, why: r.why }, 'iptables rule added');
    }
    return { added, present };
  }

  /** Remove every rule of ours (all copies), and put route_localnet back. */
  async rollback(): Promise<{ removed: number }> {
    const saved = (await this.deps.state.read<NetworkState>(NETWORK_STATE)) ?? { rules: [] };
    let removed = 0;
    for (const r of [...saved.rules, ...(await this.desired())]) {
      while ((await this.iptables(ruleArgv(r, 'check'), r.family)) === 0) {
        await this.iptables(ruleArgv(r, 'delete'), r.family);
        removed++;
      }
    }
    if (saved.routeLocalnetBefore !== undefined) await this.deps.files.overwrite(ROUTE_LOCALNET, `${saved.routeLocalnetBefore}\n`);
    await this.deps.state.remove(NETWORK_STATE);
    this.deps.log.info({ removed, routeLocalnet: saved.routeLocalnetBefore ?? 'unchanged' }, 'network rules removed');
    return { removed };
  }
}

function sameRule(a: NetRule, b: NetRule): boolean {
  return a.family === b.family && a.table === b.table && a.chain === b.chain && a.args.join('\0') === b.args.join('\0');
}
