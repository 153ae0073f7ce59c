/**
 * The `network` step: route_localnet and the rules of network-rules.ts. Which rules are there comes from
 * one iptables-save listing per family; the missing ones are added with one `iptables-restore --noflush`
 * per family, which applies all its lines or none (ecs-init appends without checking and duplicates them
 * on every start). A first boot runs four commands instead of fifteen, a drift check two instead of nine.
 */
import { loadEcsConfigs } from '../agent/ecs-config.js';
import { EcsGvisorError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { CommandResult, CommandsPort, FilesPort } from '../ports.js';
import type { StateStore } from '../state-store.js';
import {
  defaultRouteInterface,
  failedLine,
  type Listing,
  listed,
  type NetRule,
  parseListing,
  planNetworkRules,
  restoreInput,
  ruleArgv,
} from './network-rules.js';

export const NETWORK_STATE = 'network.json';
const ROUTE_LOCALNET = '/proc/sys/net/ipv4/conf/all/route_localnet';
const INTERFACE_KEY = 'ECS_OFFHOST_INTROSPECTION_INTERFACE_NAME';
/** What iptables' `-i` takes: a Linux interface name (at most 15 bytes), `+` as its wildcard. */
const INTERFACE_NAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;

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

/** The rules this configuration wants, and the listings they were planned from (IPv6 only when it is filtered). */
interface Reading {
  rules: NetRule[];
  listings: { 4: Listing; 6?: Listing };
}

type Family = 4 | 6;

export class NetworkStep {
  /** Why IPv6 could not be filtered, last time (warned once). */
  private v6Problem?: string;

  constructor(
    private readonly deps: { commands: CommandsPort; files: Pick<FilesPort, 'overwrite' | 'readText'>; state: StateStore; log: Logger },
    private readonly opts: { iptables: string; ecsConfig: string; instanceConfig: string; blockTaskImds: boolean },
  ) {}

  /** The iptables program of a family, and its -save and -restore beside it (same directory, same naming). */
  private program(family: Family, suffix: '' | '-save' | '-restore' = ''): string {
    const base = family === 6 ? this.opts.iptables.replace(/iptables([^/]*)$/, 'ip6tables$1') : this.opts.iptables;
    return `${base}${suffix}`;
  }

  private async exec(program: string, args: string[], input?: string): Promise<CommandResult> {
    try {
      return await this.deps.commands.run(program, args, { timeoutMs: 30_000, input });
    } catch (err) {
      throw new EcsGvisorError('IPTABLES_FAILED', `${program} cannot be run (${messageOf(err)}); install iptables.`, { cause: err });
    }
  }

  /** iptables with argv; exit 1 is an answer (a rule or chain is not there), anything above a failure. */
  private async iptables(args: string[], family?: 6): Promise<number> {
    const program = this.program(family ?? 4);
    const r = await this.exec(program, args);
    if (r.code > 1) {
      throw new EcsGvisorError(
        'IPTABLES_FAILED',
        `${program} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}.`,
      );
    }
    return r.code;
  }

  private async listing(family: Family): Promise<Listing> {
    const program = this.program(family, '-save');
    const r = await this.exec(program, []);
    if (r.code !== 0) throw new EcsGvisorError('IPTABLES_FAILED', `${program} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}.`);
    return parseListing(r.stdout);
  }

  /** The IPv6 listing and the chain for the IPv6 metadata rule, or why this host cannot filter IPv6. */
  private async imds6(): Promise<{ listing: Listing; chain: string } | { why: string }> {
    try {
      const listing = await this.listing(6);
      const filter = listing.chains.get('filter');
      if (filter?.has('DOCKER-USER')) return { listing, chain: 'DOCKER-USER' };
      // A table nothing has used yet is not listed; asking for its chain makes it (as adding a rule would).
      if (filter?.has('FORWARD') || (await this.iptables(['-w', '-t', 'filter', '-S', 'FORWARD'], 6)) === 0)
        return { listing, chain: 'FORWARD' };
      return { why: `${this.program(6)} has no FORWARD chain` };
    } catch (err) {
      return { why: messageOf(err) };
    }
  }

  private async read(): Promise<Reading> {
    const { user, merged } = await loadEcsConfigs(this.deps.files, this.opts.instanceConfig, this.opts.ecsConfig);
    const named = merged.get(INTERFACE_KEY);
    if (named && !INTERFACE_NAME.test(named)) {
      const file = user.vars.has(INTERFACE_KEY) ? this.opts.ecsConfig : this.opts.instanceConfig;
      throw new EcsGvisorError('ECS_CONFIG_INVALID', `${file}: ${INTERFACE_KEY}=${named} is not a network interface name.`);
    }
    const [v4, v6] = await Promise.all([this.listing(4), this.opts.blockTaskImds ? this.imds6() : undefined]);
    const why = v6 && 'why' in v6 ? v6.why : undefined;
    if (why && why !== this.v6Problem)
      this.deps.log.warn(
        { problem: why },
        'IPv6 instance metadata (fd00:ec2::254) cannot be blocked for bridge tasks: this host cannot filter IPv6',
      );
    this.v6Problem = why;
    // The default route's interface only when ecs.config names none.
    const route = named ? undefined : defaultRouteInterface(await this.deps.files.readText('/proc/net/route'));
    const rules = planNetworkRules({
      skipLocalhostFilter: merged.get('ECS_SKIP_LOCALHOST_TRAFFIC_FILTER') === 'true',
      allowOffhostIntrospection: merged.get('ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS') === 'true',
      introspectionInterface: named || (route && INTERFACE_NAME.test(route) ? route : undefined) || 'eth0',
      blockTaskImds: this.opts.blockTaskImds,
      imdsChain: v4.chains.get('filter')?.has('DOCKER-USER') ? 'DOCKER-USER' : 'FORWARD',
      imds6Chain: v6 && 'chain' in v6 ? v6.chain : undefined,
    });
    return { rules, listings: { 4: v4, 6: v6 && 'listing' in v6 ? v6.listing : undefined } };
  }

  async desired(): Promise<NetRule[]> {
    return (await this.read()).rules;
  }

  private async routeLocalnet(): Promise<string | undefined> {
    return (await this.deps.files.readText(ROUTE_LOCALNET))?.trim();
  }

  async plan(): Promise<NetworkPlan> {
    const [now, { rules, listings }] = await Promise.all([this.routeLocalnet(), this.read()]);
    return {
      routeLocalnet: { now, change: now !== '1' },
      rules: rules.map((r) => ({ ...r, present: isListed(listings, r) })),
    };
  }

  async apply(): Promise<{ added: number; present: number; removed: number }> {
    const log = this.deps.log;
    const { rules, listings } = await this.read(); // refuses a bad configuration before anything changes
    const saved = (await this.deps.state.read<NetworkState>(NETWORK_STATE)) ?? { rules: [] };
    const now = await this.routeLocalnet();
    if (now !== '1') {
      // Recorded before the change, so a crash between the two still lets rollback put it back.
      if (saved.routeLocalnetBefore === undefined && now !== undefined) saved.routeLocalnetBefore = now;
      await this.deps.state.write(NETWORK_STATE, saved);
      await this.deps.files.overwrite(ROUTE_LOCALNET, '1\n');
      log.info({ before: now }, 'net.ipv4.conf.all.route_localnet set to 1');
    }
    const missing = rules.filter((r) => !isListed(listings, r));
    const unrecorded = rules.filter((r) => !saved.rules.some((s) => sameRule(s, r)));
    if (unrecorded.length) {
      saved.rules.push(...unrecorded);
      await this.deps.state.write(NETWORK_STATE, saved); // before adding: rollback must know every rule of ours
    }
    for (const family of [4, 6] as const)
      await this.restore(
        family,
        missing.filter((r) => (r.family ?? 4) === family),
      );
    const removed = await this.removeStale(saved, rules);
    return { added: missing.length, present: rules.length - missing.length, removed };
  }

  /** Add the rules of one family in one iptables-restore: all of them or, when it fails, none. */
  private async restore(family: Family, rules: NetRule[]): Promise<void> {
    if (!rules.length) return;
    const program = this.program(family, '-restore');
    const input = restoreInput(rules);
    if ('unsafe' in input)
      throw new EcsGvisorError('IPTABLES_FAILED', `iptables-restore cannot be given the argument "${input.unsafe}" safely.`);
    const r = await this.exec(program, ['-w', '--noflush'], input.text);
    if (r.code !== 0) {
      const rule = input.ruleAt.get(failedLine(r.stderr) ?? 0);
      const what = rule ? `the rule for ${rule.why} to ${rule.table}/${rule.chain}` : `${rules.length} rule(s)`;
      // Its words on one line, without the pointer to its help.
      const said = r.stderr
        .split('\n')
        .map((l) => l.trim().replace(/\.$/, ''))
        .filter((l) => l && !l.startsWith('Try '))
        .join('; ');
      throw new EcsGvisorError(
        'IPTABLES_FAILED',
        `${program} could not add ${what} (exit ${r.code}: ${said || 'no output'}); none of them was added.`,
      );
    }
    for (const x of rules) this.deps.log.info({ table: x.table, chain: x.chain, why: x.why }, 'iptables rule added');
  }

  /**
   * Rules of ours this configuration no longer wants (another introspection interface, an older
   * release's comment) are removed, every copy, and forgotten.
   */
  private async removeStale(saved: NetworkState, wanted: readonly NetRule[]): Promise<number> {
    const stale = saved.rules.filter((s) => !wanted.some((r) => sameRule(s, r)));
    if (!stale.length) return 0;
    let removed = 0;
    for (const r of stale) removed += await this.removeAll(r);
    saved.rules = saved.rules.filter((s) => !stale.includes(s));
    await this.deps.state.write(NETWORK_STATE, saved);
    if (removed) this.deps.log.info({ removed }, 'iptables rules of ours no longer wanted removed');
    return removed;
  }

  /** Delete every copy of a rule (by its exact arguments); how many there were. */
  private async removeAll(r: NetRule): Promise<number> {
    let n = 0;
    while ((await this.iptables(ruleArgv(r, 'check'), r.family)) === 0) {
      await this.iptables(ruleArgv(r, 'delete'), r.family);
      n++;
    }
    return n;
  }

  /** Remove every rule of ours (all copies), and put route_localnet back. */
  async rollback(): Promise<{ removed: number }> {
    const saved = (await this.deps.state.read<NetworkState>(NETWORK_STATE)) ?? { rules: [] };
    let removed = 0;
    for (const r of [...saved.rules, ...(await this.desired())]) removed += await this.removeAll(r);
    if (saved.routeLocalnetBefore !== undefined) await this.deps.files.overwrite(ROUTE_LOCALNET, `${saved.routeLocalnetBefore}\n`);
    await this.deps.state.remove(NETWORK_STATE);
    this.deps.log.info({ removed, routeLocalnet: saved.routeLocalnetBefore ?? 'unchanged' }, 'network rules removed');
    return { removed };
  }
}

function isListed(listings: Reading['listings'], r: NetRule): boolean {
  const l = listings[r.family ?? 4];
  return l !== undefined && listed(l, r);
}

function sameRule(a: NetRule, b: NetRule): boolean {
  return a.family === b.family && a.table === b.table && a.chain === b.chain && a.args.join('\0') === b.args.join('\0');
}
