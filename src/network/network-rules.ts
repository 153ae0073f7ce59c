/**
 * The host rules ecs-init's pre-start adds for the agent (v1.105.1), plus one of ours: bridge-mode task
 * containers may not reach instance metadata (169.254.169.254), or a sandboxed task could still take the
 * instance role. Pure: options in, rules out. Every rule carries a comment naming ecs-gvisor, so a rule
 * ecs-init added by hand stays distinct and rollback removes exactly ours.
 */

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

const comment = (why: string) => ['-m', 'comment', '--comment', `ecs-gvisor: ${why}`];

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
  return rules.map((r) => ({ ...r, args: [...r.args, ...comment(r.why)] }));
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
