/**
 * The host rules ecs-init's pre-start adds for the agent (v1.105.1), plus one of ours: bridge-mode task
 * containers may not reach instance metadata (169.254.169.254), or a sandboxed task could still take the
 * instance role. Pure: options in, rules out, and the iptables-save and iptables-restore texts they are
 * read from and written with. Every rule carries a comment naming ecs-gvisor and a tag of the rest of the
 * rule, so a rule ecs-init added by hand stays distinct, rollback removes exactly ours, and one
 * iptables-save listing tells which of ours are there without matching iptables' own spelling of a rule.
 */
import { createHash } from 'node:crypto';

export interface NetRule {
  /** IPv6 rules go to ip6tables (absent: IPv4, iptables). */
  family?: 6;
  table: 'nat' | 'filter';
  chain: string;
  /** Insert at the top (filters must come before other ACCEPTs) or append. */
  insert: boolean;
  args: string[];
  why: string;
}

export interface NetworkOptions {
  skipLocalhostFilter: boolean;
  allowOffhostIntrospection: boolean;
  introspectionInterface: string;
  blockTaskImds: boolean;
  /** DOCKER-USER when dockerd manages iptables (it is evaluated before Docker's own ACCEPTs), else FORWARD. */
  imdsChain: string;
  /** The same for ip6tables; undefined when the host cannot filter IPv6 (no ip6tables). */
  imds6Chain: string | undefined;
}

/**
 * A rule's comment: what it is for, and a tag of everything else in it (family, table, chain, match and
 * target), so the comment in a listing stands for the whole rule. Only root can add a rule, so only root
 * could make a listing claim one of ours.
 */
export function ruleComment(r: Pick<NetRule, 'family' | 'table' | 'chain' | 'args' | 'why'>): string {
  const tag = createHash('sha256')
    .update(JSON.stringify([r.family ?? 4, r.table, r.chain, r.args]))
    .digest('hex')
    .slice(0, 8);
  return `ecs-gvisor: ${r.why} [${tag}]`;
}

export function planNetworkRules(o: NetworkOptions): NetRule[] {
  const rules: NetRule[] = [
    {
      table: 'nat',
      chain: 'PREROUTING',
      insert: false,
      why: 'task IAM role credentials (bridge tasks)',
      args: ['-p', 'tcp', '-d', '169.254.170.2', '--dport', '80', '-j', 'DNAT', '--to-destination', '127.0.0.1:51679'],
    },
    {
      table: 'nat',
      chain: 'OUTPUT',
      insert: false,
      why: 'task IAM role credentials (host tasks)',
      args: ['-p', 'tcp', '-d', '169.254.170.2', '--dport', '80', '-j', 'REDIRECT', '--to-ports', '51679'],
    },
  ];
  if (!o.skipLocalhostFilter) {
    rules.push({
      table: 'filter',
      chain: 'INPUT',
      insert: true,
      why: 'no off-host traffic to 127.0.0.0/8',
      args: [
        '--dst',
        '127.0.0.0/8',
        '!',
        '--src',
        '127.0.0.0/8',
        '-m',
        'conntrack',
        '!',
        '--ctstate',
        'RELATED,ESTABLISHED,DNAT',
        '-j',
        'DROP',
      ],
    });
  }
  if (!o.allowOffhostIntrospection) {
    rules.push({
      table: 'filter',
      chain: 'INPUT',
      insert: true,
      why: 'no off-host access to agent introspection',
      args: ['-p', 'tcp', '-i', o.introspectionInterface, '--dport', '51678', '-j', 'DROP'],
    });
  }
  if (o.blockTaskImds) {
    rules.push({
      table: 'filter',
      chain: o.imdsChain,
      insert: true,
      why: 'no instance metadata for bridge tasks',
      args: ['-d', '169.254.169.254/32', '-j', 'DROP'],
    });
    // Nitro instances also answer on IPv6 when the subnet has it; Docker bridges get IPv6 with "ipv6": true.
    if (o.imds6Chain) {
      rules.push({
        family: 6,
        table: 'filter',
        chain: o.imds6Chain,
        insert: true,
        why: 'no IPv6 instance metadata for bridge tasks',
        args: ['-d', 'fd00:ec2::254/128', '-j', 'DROP'],
      });
    }
  }
  return rules.map((r) => ({ ...r, args: [...r.args, '-m', 'comment', '--comment', ruleComment(r)] }));
}

/** What one iptables-save listing says: per table, its chains and its rules as listed (`-A CHAIN …`). */
export interface Listing {
  chains: ReadonlyMap<string, ReadonlySet<string>>;
  rules: ReadonlyMap<string, readonly string[]>;
}

/** Parse iptables-save's output (`*table`, `:CHAIN policy [counters]`, `-A …`, `COMMIT`). */
export function parseListing(text: string): Listing {
  const chains = new Map<string, Set<string>>();
  const rules = new Map<string, string[]>();
  let table: string | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      chains.set(table, new Set());
      rules.set(table, []);
    } else if (table && line.startsWith(':')) chains.get(table)!.add(line.slice(1).split(' ')[0]!);
    else if (table && line.startsWith('-A ')) rules.get(table)!.push(line);
  }
  return { chains, rules };
}

/** The comment a rule of ours carries (its last `--comment`). */
function commentOf(r: NetRule): string | undefined {
  const i = r.args.lastIndexOf('--comment');
  return i >= 0 ? r.args[i + 1] : undefined;
}

/** Whether the listing has the rule: in its table and chain, with its comment (whose tag stands for the rest). */
export function listed(l: Listing, r: NetRule): boolean {
  const c = commentOf(r);
  return c !== undefined && (l.rules.get(r.table) ?? []).some((line) => line.startsWith(`-A ${r.chain} `) && line.includes(c));
}

/** Arguments iptables-restore takes as they are: no quotes, spaces, backslashes or comment signs. */
const PLAIN = /^[A-Za-z0-9_.:/,!+@=-]+$/;
/** A comment of ours, written in double quotes. */
const QUOTABLE = /^[A-Za-z0-9_.:/,!+@=()[\] -]+$/;

/**
 * The iptables-restore input (for `--noflush`) that adds the rules, one table at a time in the order
 * given, and the rule each input line adds (by line number, 1-based, for the line iptables-restore
 * names when it fails); or the first argument it cannot write safely (`unsafe`): a line is split at
 * spaces, so an argument with one could add something else.
 */
export function restoreInput(rules: readonly NetRule[]): { text: string; ruleAt: Map<number, NetRule> } | { unsafe: string } {
  const lines: string[] = [];
  const ruleAt = new Map<number, NetRule>();
  for (const table of [...new Set(rules.map((r) => r.table))]) {
    lines.push(`*${table}`);
    for (const r of rules.filter((x) => x.table === table)) {
      const tokens = [...(r.insert ? ['-I', r.chain, '1'] : ['-A', r.chain])];
      for (const [i, a] of r.args.entries()) {
        if (r.args[i - 1] === '--comment' && QUOTABLE.test(a)) tokens.push(`"${a}"`);
        else if (PLAIN.test(a)) tokens.push(a);
        else return { unsafe: a };
      }
      lines.push(tokens.join(' '));
      ruleAt.set(lines.length, r);
    }
    lines.push('COMMIT');
  }
  return { text: `${lines.join('\n')}\n`, ruleAt };
}

/** The input line iptables-restore says failed (nft: "line N failed"; legacy: "Error occurred at line: N"). */
export function failedLine(stderr: string): number | undefined {
  const m = /line:? (\d+)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

/** iptables argv to check, add or delete a rule. */
export function ruleArgv(r: NetRule, op: 'check' | 'add' | 'delete'): string[] {
  const action = op === 'check' ? ['-C', r.chain] : op === 'delete' ? ['-D', r.chain] : r.insert ? ['-I', r.chain, '1'] : ['-A', r.chain];
  return ['-w', '-t', r.table, ...action, ...r.args];
}

/** The interface of the default route in /proc/net/route (ecs-init's default is eth0). */
export function defaultRouteInterface(procNetRoute: string | undefined): string | undefined {
  for (const line of (procNetRoute ?? '').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 2 && f[1] === '00000000') return f[0];
  }
  return undefined;
}
