/**
 * The network step's decisions (add what is missing in one iptables-restore per family, nothing when all
 * is there, put back a flushed chain, refuse a bad interface name before any change, roll back every copy
 * of ours and route_localnet), against iptables and the files in memory. The real iptables programs are
 * in test/integration/network-step.test.ts.
 */
import pino from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { NetworkStep } from '../../src/network/network-step.js';
import { StateStore } from '../../src/state-store.js';
import { MemoryFiles } from '../fakes/memory-files.js';
import { MemoryIptables } from '../fakes/memory-iptables.js';

const ROUTE_LOCALNET = '/proc/sys/net/ipv4/conf/all/route_localnet';
let iptables: MemoryIptables;
let files: MemoryFiles;

function step() {
  return new NetworkStep(
    { commands: iptables, files, state: new StateStore(files, '/var/lib/ecs-gvisor'), log: pino({ level: 'silent' }) },
    { iptables: '/usr/sbin/iptables', ecsConfig: '/etc/ecs/ecs.config', instanceConfig: '/var/lib/ecs/ecs.config', blockTaskImds: true },
  );
}

beforeEach(() => {
  iptables = new MemoryIptables();
  files = new MemoryFiles({
    [ROUTE_LOCALNET]: '0\n',
    '/etc/ecs/ecs.config': 'ECS_CLUSTER=prod\n',
    '/proc/net/route': 'Iface\tDestination\tGateway\nens5\t00000000\t0100000A\n',
  });
});

describe('the network step against iptables in memory', () => {
  it('first apply: route_localnet on, every rule added with one iptables-restore per family, recorded for rollback', async () => {
    const r = await step().apply();
    expect(files.text(ROUTE_LOCALNET)).toBe('1\n');
    expect(r.added).toBeGreaterThanOrEqual(5);
    expect(r).toMatchObject({ present: 0, removed: 0 });
    expect(iptables.runs.filter((x) => x.includes('-restore'))).toEqual([
      'iptables-restore -w --noflush',
      'ip6tables-restore -w --noflush',
    ]);
    const nat = iptables.rules(4, 'nat').join('\n');
    expect(nat).toMatch(/^-A PREROUTING .*-d 169\.254\.170\.2\/?(32)? .*--to-destination 127\.0\.0\.1:51679/m);
    // The off-host introspection rule names the default route's interface.
    expect(iptables.rules(4, 'filter').join('\n')).toMatch(/-i ens5 .*--dport 51678/);
    expect(iptables.rules(6, 'filter').join('\n')).toContain('fd00:ec2::254');
    const saved = JSON.parse(files.text('/var/lib/ecs-gvisor/network.json')!);
    expect(saved).toMatchObject({ routeLocalnetBefore: '0' });
    expect(saved.rules).toHaveLength(r.added);
  });

  it('converged: nothing added, two listings and no other command', async () => {
    await step().apply();
    iptables.runs.length = 0;
    expect(await step().apply()).toMatchObject({ added: 0, removed: 0 });
    expect(iptables.runs).toEqual(['iptables-save', 'ip6tables-save']);
  });

  it('a flushed chain: plan names what is missing, apply puts back only that', async () => {
    const first = await step().apply();
    iptables.flush(4, 'nat', 'PREROUTING');
    const plan = await step().plan();
    const missing = plan.rules.filter((x) => !x.present);
    expect(missing.map((x) => `${x.table}/${x.chain}`)).toEqual(['nat/PREROUTING']);
    expect(await step().apply()).toEqual({ added: 1, present: first.added - 1, removed: 0 });
    expect((await step().plan()).rules.every((x) => x.present)).toBe(true);
  });

  it('an interface name iptables would take as something else: refused before any change', async () => {
    files.put('/etc/ecs/ecs.config', 'ECS_CLUSTER=prod\nECS_OFFHOST_INTROSPECTION_INTERFACE_NAME=eth0 -j ACCEPT\n');
    await expect(step().apply()).rejects.toMatchObject({
      code: 'ECS_CONFIG_INVALID',
      message: '/etc/ecs/ecs.config: ECS_OFFHOST_INTROSPECTION_INTERFACE_NAME=eth0 -j ACCEPT is not a network interface name.',
    });
    expect(files.text(ROUTE_LOCALNET)).toBe('0\n');
    expect(iptables.runs.filter((x) => !x.includes('-save'))).toEqual([]);
  });

  it('rollback removes every copy of ours (ecs-init duplicates them) and puts route_localnet back; others’ rules stay', async () => {
    await step().apply();
    const ours = iptables.rules(4, 'nat')[0]!;
    iptables.add(4, 'nat', ours); // a second copy
    iptables.add(4, 'filter', '-A INPUT -p tcp --dport 22 -j ACCEPT');
    const r = await step().rollback();
    expect(r.removed).toBeGreaterThanOrEqual(6);
    expect(iptables.rules(4, 'nat')).toEqual([]);
    expect(iptables.rules(4, 'filter')).toEqual(['-A INPUT -p tcp --dport 22 -j ACCEPT']);
    expect(iptables.rules(6, 'filter')).toEqual([]);
    expect(files.text(ROUTE_LOCALNET)).toBe('0\n');
    expect(files.text('/var/lib/ecs-gvisor/network.json')).toBeUndefined();
  });
});
