/**
 * The network step through the CLI, inside a network namespace this test creates (`ip netns add`), so the
 * host's own rules are never touched. Assertions are on what `iptables -S` lists there.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../harness/cli.js';

let ns: string;
let dir: string;

function inNs(...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8' });
}
const rules = (table: string) =>
  inNs('iptables', '-w', '-t', table, '-S')
    .split('\n')
    .filter((l) => l.startsWith('-A '));
const ours = (table: string) => rules(table).filter((l) => l.includes('ecs-gvisor:'));
const ours6 = () =>
  inNs('ip6tables', '-w', '-S')
    .split('\n')
    .filter((l) => l.startsWith('-A ') && l.includes('ecs-gvisor:'));
const env = (extra: Record<string, string> = {}) => ({
  ECS_GVISOR_CONFIG: '/nonexistent/config',
  ECS_GVISOR_STATE_DIR: `${dir}/state`,
  ECS_GVISOR_ECS_CONFIG: `${dir}/ecs.config`,
  ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/instance.config`,
  ...extra,
});
const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, env(extra), 60_000, ns);

beforeEach(() => {
  ns = `egv-net-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  execFileSync('ip', ['netns', 'add', ns]);
  dir = mkdtempSync('/tmp/egv-net-');
  writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\nECS_OFFHOST_INTROSPECTION_INTERFACE_NAME=ens5\n');
});
afterEach(() => {
  execFileSync('ip', ['netns', 'del', ns]);
});

describe('bootstrap --only network', () => {
  it('sets route_localnet and adds ecs-init’s rules plus the metadata block, once however often it runs', async () => {
    expect(inNs('cat', '/proc/sys/net/ipv4/conf/all/route_localnet').trim()).toBe('0');
    for (let i = 0; i < 3; i++) {
      const r = await cli(['bootstrap', '--only', 'network']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    expect(inNs('cat', '/proc/sys/net/ipv4/conf/all/route_localnet').trim()).toBe('1');
    expect(ours('nat')).toEqual([
      '-A PREROUTING -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment "ecs-gvisor: task IAM role credentials (bridge tasks)" -j DNAT --to-destination 127.0.0.1:51679',
      '-A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment "ecs-gvisor: task IAM role credentials (host tasks)" -j REDIRECT --to-ports 51679',
    ]);
    expect(ours('filter')).toEqual([
      '-A INPUT -i ens5 -p tcp -m tcp --dport 51678 -m comment --comment "ecs-gvisor: no off-host access to agent introspection" -j DROP',
      '-A INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "ecs-gvisor: no off-host traffic to 127.0.0.0/8" -j DROP',
      '-A FORWARD -d 169.254.169.254/32 -m comment --comment "ecs-gvisor: no instance metadata for bridge tasks" -j DROP',
    ]);
    // Instance metadata's IPv6 address too (Nitro), for bridge tasks on an IPv6-enabled bridge.
    expect(ours6()).toEqual([
      '-A FORWARD -d fd00:ec2::254/128 -m comment --comment "ecs-gvisor: no IPv6 instance metadata for bridge tasks" -j DROP',
    ]);
  });

  it('honours ecs-init’s opt-outs and the metadata switch', async () => {
    writeFileSync(`${dir}/instance.config`, 'ECS_SKIP_LOCALHOST_TRAFFIC_FILTER=true\n');
    writeFileSync(`${dir}/ecs.config`, 'ECS_ALLOW_OFFHOST_INTROSPECTION_ACCESS=true\n');
    expect((await cli(['bootstrap', '--only', 'network'], { ECS_GVISOR_BLOCK_TASK_IMDS: 'false' })).code).toBe(0);
    expect(ours('filter')).toEqual([]);
    expect(ours6()).toEqual([]);
    expect(ours('nat')).toHaveLength(2);
  });

  it('puts the metadata block in DOCKER-USER when dockerd manages iptables', async () => {
    inNs('iptables', '-w', '-N', 'DOCKER-USER');
    expect((await cli(['bootstrap', '--only', 'network'])).code).toBe(0);
    expect(ours('filter').filter((l) => l.includes('169.254.169.254'))).toEqual([
      '-A DOCKER-USER -d 169.254.169.254/32 -m comment --comment "ecs-gvisor: no instance metadata for bridge tasks" -j DROP',
    ]);
  });

  it('plan lists what would be added and changes nothing', async () => {
    const p = await cli(['plan', '--only', 'network']);
    expect(p.code).toBe(0);
    expect(p.stdout).toContain('route_localnet: 0 -> 1');
    expect(p.stdout).toContain('add      -t nat -A PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT');
    expect(rules('nat')).toEqual([]);
    expect(inNs('cat', '/proc/sys/net/ipv4/conf/all/route_localnet').trim()).toBe('0');
  });

  it('rollback removes exactly ours: a rule ecs-init added itself stays, route_localnet goes back', async () => {
    // ecs-init's own copy, added without a comment before we ran.
    inNs(
      'iptables',
      '-w',
      '-t',
      'nat',
      '-A',
      'OUTPUT',
      '-p',
      'tcp',
      '-d',
      '169.254.170.2',
      '--dport',
      '80',
      '-j',
      'REDIRECT',
      '--to-ports',
      '51679',
    );
    expect((await cli(['bootstrap', '--only', 'network'])).code).toBe(0);
    expect(ours('nat')).toHaveLength(2);
    const r = await cli(['rollback', '--only', 'network']);
    expect(r.code).toBe(0);
    expect(ours('nat')).toEqual([]);
    expect(ours('filter')).toEqual([]);
    expect(ours6()).toEqual([]);
    expect(rules('nat')).toEqual(['-A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 51679']);
    expect(inNs('cat', '/proc/sys/net/ipv4/conf/all/route_localnet').trim()).toBe('0');
  });

  it('a missing iptables is one clear error, exit 4', async () => {
    const r = await cli(['bootstrap', '--only', 'network'], { ECS_GVISOR_IPTABLES: '/nonexistent/iptables' });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^ecs-gvisor: \/nonexistent\/iptables cannot be run \(.*\); install iptables\.\n$/);
  });
});
