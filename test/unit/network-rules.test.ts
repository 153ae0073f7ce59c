import { describe, expect, it } from 'vitest';
import { defaultRouteInterface, planNetworkRules, ruleArgv } from '../../src/network/network-rules.js';

const base = {
  skipLocalhostFilter: false,
  allowOffhostIntrospection: false,
  introspectionInterface: 'eth0',
  blockTaskImds: true,
  imdsChain: 'FORWARD',
  imds6Chain: 'DOCKER-USER',
};

describe('network rules', () => {
  it('plans ecs-init’s rules and ours, each tagged', () => {
    const rules = planNetworkRules(base);
    expect(rules.map((r) => `${r.family ?? 4} ${r.table}/${r.chain}`)).toEqual([
      '4 nat/PREROUTING',
      '4 nat/OUTPUT',
      '4 filter/INPUT',
      '4 filter/INPUT',
      '4 filter/FORWARD',
      '6 filter/DOCKER-USER',
    ]);
    expect(rules.at(-1)!.args.slice(0, 4)).toEqual(['-d', 'fd00:ec2::254/128', '-j', 'DROP']);
    // No IPv6 filtering on the host: the IPv4 rule stands alone.
    expect(planNetworkRules({ ...base, imds6Chain: undefined }).filter((r) => r.family === 6)).toEqual([]);
    expect(rules.every((r) => r.args.slice(-4).join(' ') === `-m comment --comment ecs-gvisor: ${r.why}`)).toBe(true);
    expect(planNetworkRules({ ...base, skipLocalhostFilter: true, allowOffhostIntrospection: true, blockTaskImds: false })).toHaveLength(2);
  });

  it('checks, inserts or appends, and deletes with argument arrays', () => {
    const [pre, , localhost] = planNetworkRules(base);
    expect(ruleArgv(pre!, 'check').slice(0, 5)).toEqual(['-w', '-t', 'nat', '-C', 'PREROUTING']);
    expect(ruleArgv(pre!, 'add').slice(0, 5)).toEqual(['-w', '-t', 'nat', '-A', 'PREROUTING']);
    expect(ruleArgv(localhost!, 'add').slice(0, 6)).toEqual(['-w', '-t', 'filter', '-I', 'INPUT', '1']);
    expect(ruleArgv(localhost!, 'delete').slice(0, 5)).toEqual(['-w', '-t', 'filter', '-D', 'INPUT']);
  });

  it('finds the default route’s interface', () => {
    const route = 'Iface\tDestination\tGateway\nens5\t0000FEA9\t00000000\nens5\t00000000\t0100A8C0\n';
    expect(defaultRouteInterface(route)).toBe('ens5');
    expect(defaultRouteInterface('Iface\tDestination\n')).toBeUndefined();
    expect(defaultRouteInterface(undefined)).toBeUndefined();
  });
});
