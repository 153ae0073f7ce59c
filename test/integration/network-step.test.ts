/**
 * The network step through the CLI, inside a network namespace this test creates (`ip netns add`), so the
 * host's own rules are never touched. Assertions are on what `iptables -S` lists there.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
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
/** Our rules as listed, their tag (a hash of the rule, unit-tested) written [tag]. */
const untagged = (l: string) => l.replace(/ \[[0-9a-f]{8}\]"/, ' [tag]"');
const ours = (table: string) =>
  rules(table)
    .filter((l) => l.includes('ecs-gvisor:'))
    .map(untagged);
const ours6 = () =>
  inNs('ip6tables', '-w', '-S')
    .split('\n')
    .filter((l) => l.startsWith('-A ') && l.includes('ecs-gvisor:'))
    .map(untagged);
/** ecs-init's rule for host tasks' credentials, as it adds it (no comment). */
const HOST_CREDENTIALS = ['-p', 'tcp', '-d', '169.254.170.2', '--dport', '80', '-j', 'REDIRECT', '--to-ports', '51679'];
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
      '-A PREROUTING -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment "ecs-gvisor: task IAM role credentials (bridge tasks) [tag]" -j DNAT --to-destination 127.0.0.1:51679',
      '-A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment "ecs-gvisor: task IAM role credentials (host tasks) [tag]" -j REDIRECT --to-ports 51679',
    ]);
    expect(ours('filter')).toEqual([
      '-A INPUT -i ens5 -p tcp -m tcp --dport 51678 -m comment --comment "ecs-gvisor: no off-host access to agent introspection [tag]" -j DROP',
      '-A INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "ecs-gvisor: no off-host traffic to 127.0.0.0/8 [tag]" -j DROP',
      '-A FORWARD -d 169.254.169.254/32 -m comment --comment "ecs-gvisor: no instance metadata for bridge tasks [tag]" -j DROP',
    ]);
    // Instance metadata's IPv6 address too (Nitro), for bridge tasks on an IPv6-enabled bridge.
    expect(ours6()).toEqual([
      '-A FORWARD -d fd00:ec2::254/128 -m comment --comment "ecs-gvisor: no IPv6 instance metadata for bridge tasks [tag]" -j DROP',
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
      '-A DOCKER-USER -d 169.254.169.254/32 -m comment --comment "ecs-gvisor: no instance metadata for bridge tasks [tag]" -j DROP',
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
    inNs('iptables', '-w', '-t', 'nat', '-A', 'OUTPUT', ...HOST_CREDENTIALS);
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

  it('the same with iptables-legacy (Amazon Linux 2’s): its save and restore, once however often it runs, and rollback', async () => {
    const legacy = (family = '') =>
      inNs(`ip${family}tables-legacy-save`)
        .split('\n')
        .filter((l) => l.includes('ecs-gvisor:'))
        .map(untagged);
    for (let i = 0; i < 2; i++)
      expect((await cli(['bootstrap', '--only', 'network'], { ECS_GVISOR_IPTABLES: '/usr/sbin/iptables-legacy' })).code).toBe(0);
    expect(legacy()).toHaveLength(5);
    expect(legacy()).toContain(
      '-A INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "ecs-gvisor: no off-host traffic to 127.0.0.0/8 [tag]" -j DROP',
    );
    expect(legacy('6')).toEqual([
      '-A FORWARD -d fd00:ec2::254/128 -m comment --comment "ecs-gvisor: no IPv6 instance metadata for bridge tasks [tag]" -j DROP',
    ]);
    expect(ours('nat')).toEqual([]); // nothing went to nft
    expect((await cli(['rollback', '--only', 'network'], { ECS_GVISOR_IPTABLES: '/usr/sbin/iptables-legacy' })).code).toBe(0);
    expect([...legacy(), ...legacy('6')]).toEqual([]);
  });

  it('a missing iptables is one clear error, exit 4', async () => {
    const r = await cli(['bootstrap', '--only', 'network'], { ECS_GVISOR_IPTABLES: '/nonexistent/iptables' });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^ecs-gvisor: \/nonexistent\/iptables-save cannot be run \(.*\); install iptables\.\n$/);
  });

  it('adds the rules in one iptables-restore per family: when a line fails, none is added and the error names its rule', async () => {
    // iptables-restore as the host has it, except that the REDIRECT target it is given does not exist.
    const bin = mkdtempSync('/tmp/egv-iptables-');
    for (const p of ['iptables', 'iptables-save', 'ip6tables', 'ip6tables-save', 'ip6tables-restore'])
      symlinkSync(`/usr/sbin/${p}`, `${bin}/${p}`);
    writeFileSync(
      `${bin}/iptables-restore`,
      '#!/bin/sh\nsed \'s/-j REDIRECT/-j NO-SUCH-TARGET/\' | exec /usr/sbin/iptables-restore "$@"\n',
      { mode: 0o755 },
    );
    const r = await cli(['bootstrap', '--only', 'network'], { ECS_GVISOR_IPTABLES: `${bin}/iptables` });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(
      /^ecs-gvisor: \/tmp\/egv-iptables-\w+\/iptables-restore could not add the rule for task IAM role credentials \(host tasks\) to nat\/OUTPUT \(exit [12]: [^\n]*line:? 3[^\n]*\); none of them was added\.\n$/,
    );
    expect(ours('nat')).toEqual([]);
    expect(ours('filter')).toEqual([]);
    // The same run again with the host's iptables-restore adds them all, once.
    expect((await cli(['bootstrap', '--only', 'network'])).code).toBe(0);
    expect(ours('nat')).toHaveLength(2);
    expect(ours('filter')).toHaveLength(3);
  });

  it('a rule of ours the configuration no longer wants is removed: another interface, an older release’s comment', async () => {
    expect((await cli(['bootstrap', '--only', 'network'])).code).toBe(0);
    // An older release's rule (its comment had no tag), recorded as ours, as that release left it.
    const old = [...HOST_CREDENTIALS, '-m', 'comment', '--comment', 'ecs-gvisor: task IAM role credentials (host tasks)'];
    inNs('iptables', '-w', '-t', 'nat', '-A', 'OUTPUT', ...old);
    const state = JSON.parse(readFileSync(`${dir}/state/network.json`, 'utf8'));
    state.rules.push({ table: 'nat', chain: 'OUTPUT', insert: false, why: 'task IAM role credentials (host tasks)', args: old });
    writeFileSync(`${dir}/state/network.json`, JSON.stringify(state));
    writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\nECS_OFFHOST_INTROSPECTION_INTERFACE_NAME=ens6\n');
    expect((await cli(['bootstrap', '--only', 'network'])).code).toBe(0);
    expect(rules('nat').filter((l) => l.includes('ecs-gvisor:') && !l.includes(' ['))).toEqual([]);
    expect(ours('nat')).toHaveLength(2);
    expect(ours('filter').filter((l) => l.includes('--dport 51678'))).toEqual([
      '-A INPUT -i ens6 -p tcp -m tcp --dport 51678 -m comment --comment "ecs-gvisor: no off-host access to agent introspection [tag]" -j DROP',
    ]);
    const after = JSON.parse(readFileSync(`${dir}/state/network.json`, 'utf8'));
    expect(after.rules).toHaveLength(6); // what this configuration wants, no more
  });

  it('an interface name that could be read as more than a name is refused, naming the file and key; nothing is added', async () => {
    writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\nECS_OFFHOST_INTROSPECTION_INTERFACE_NAME=eth0 -j ACCEPT\n');
    const r = await cli(['bootstrap', '--only', 'network']);
    expect(r.stderr).toBe(
      `ecs-gvisor: ${dir}/ecs.config: ECS_OFFHOST_INTROSPECTION_INTERFACE_NAME=eth0 -j ACCEPT is not a network interface name.\n`,
    );
    expect(r.code).toBe(3);
    expect(rules('nat')).toEqual([]);
    expect(rules('filter')).toEqual([]);
  });
});
