import { describe, expect, it } from 'vitest';
import { buildStatus, type StatusReport } from '../../src/status/status-report.js';
import { networksRow, renderStatusText } from '../../src/status/status-text.js';
import type { WatchSnapshot } from '../../src/watch/watch-state.js';

const runtime = (o: Partial<StatusReport['runtime']>) =>
  ({ networkPolicy: 'auto', networkModes: [], verified: true, ...o }) as StatusReport['runtime'];

describe('status text: the networks row', () => {
  it('says the modes are still being proven between READY and their probes, and what each showed after', () => {
    expect(networksRow(runtime({ evidence: { pid: 1 } as StatusReport['runtime']['evidence'] }))).toBe(
      'policy auto; ECS modes proven: none (their probes are still starting)',
    );
    const evidence = {
      networks: {
        own: { proven: true, stack: 'netstack' },
        joined: { proven: true, stack: 'passthrough' },
        host: { proven: false, reason: 'refused by runsc' },
      },
    } as unknown as StatusReport['runtime']['evidence'];
    const row = networksRow(runtime({ evidence, networkModes: ['bridge', 'awsvpc'] }));
    expect(row.split('\n')[0]).toBe('policy auto; ECS modes proven: bridge, awsvpc');
    expect(row).toContain('host: not proven (refused by runsc)');
    // Not verified: nothing is being proven.
    expect(networksRow(runtime({ verified: false }))).toBe('policy auto; ECS modes proven: none');
  });
});

/** What every report below starts from: runsc verified by its last proof, metrics settings at their defaults. */
const VERIFIED = {
  version: '0',
  config: {
    runtimeName: 'runsc',
    runscPath: '/r',
    networkPolicy: 'auto',
    lifecycle: { enabled: false, spotDrain: false },
    metricsAddress: '127.0.0.1',
  },
  runtimeState: { name: 'runsc', runscPath: '/r', verified: true },
  runsc: { version: 'x' },
};

describe('status while Docker is not answering', () => {
  it('the first line says so and gives the watch’s last words as such, so it never contradicts the rows below', () => {
    const watch = {
      pid: 1,
      updatedAt: new Date().toISOString(),
      summary: 'sandbox verified (runsc x); agent running; registered in prod, ACTIVE, connected; audit 0 violation(s) in 1',
      healthy: true,
      agent: { running: true, restarts: 0 },
    } as unknown as WatchSnapshot;
    const s = buildStatus({
      ...VERIFIED,
      docker: { problem: 'Docker at unix:///var/run/docker.sock cannot be reached to get info (connect ENOENT).' },
      watch,
      watchLive: true,
    });
    expect(s.healthy).toBe(false);
    expect(s.summary).toBe(
      'Docker is not answering (Docker at unix:///var/run/docker.sock cannot be reached to get info (connect ENOENT).); the watch last saw: sandbox verified (runsc x); agent running; registered in prod, ACTIVE, connected; audit 0 violation(s) in 1',
    );
    expect(renderStatusText(s)).toMatch(/^healthy +NO: Docker is not answering/m);
  });
});

describe('status text: the registration row', () => {
  it('says what the instance itself sees of the agent’s ACS connection, beside what ECS last said', () => {
    const s = buildStatus({
      ...VERIFIED,
      docker: { problem: 'not asked here' },
      watch: {
        pid: 1,
        updatedAt: new Date().toISOString(),
        summary: '',
        healthy: true,
        agent: { running: true, restarts: 0 },
        registration: {
          cluster: 'prod',
          containerInstanceArn: 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc',
          status: 'ACTIVE',
          agentConnected: false,
          acs: {
            state: 'connected',
            since: '2026-12-07T07:00:00.000Z',
            why: 'the agent’s log says connected, and it holds the connection',
          },
          callsLastHour: 1,
        },
      } as unknown as WatchSnapshot,
      watchLive: true,
    });
    expect(renderStatusText(s)).toContain(
      'ACTIVE, agentConnected=false, health -\n  ACS connection seen here: connected since 2026-12-07T07:00:00.000Z (the agent’s log says connected, and it holds the connection)',
    );
  });
});

describe('status text: the metrics row', () => {
  const base = {
    ...VERIFIED,
    docker: { problem: 'not asked here' },
    watch: {
      pid: 1,
      updatedAt: new Date().toISOString(),
      summary: '',
      healthy: true,
      agent: { running: true, restarts: 0 },
    } as unknown as WatchSnapshot,
    watchLive: true,
  };
  const config = (o: { metricsPort?: number; metricsAddress: string; metricsTextfile?: string }) => ({ ...VERIFIED.config, ...o });

  it('names the address it listens on and the textfile it writes, and why one is off', () => {
    const on = buildStatus({
      ...base,
      config: config({ metricsPort: 9101, metricsAddress: '::', metricsTextfile: '/var/lib/ne/ecs_gvisor.prom' }),
      metrics: { port: 9101, address: '::', serving: true, textfile: '/var/lib/ne/ecs_gvisor.prom', textfileWriting: true, at: '' },
    });
    expect(renderStatusText(on)).toMatch(/^metrics +http:\/\/\[::\]:9101\/metrics; textfile \/var\/lib\/ne\/ecs_gvisor\.prom$/m);
    const off = buildStatus({
      ...base,
      config: config({ metricsAddress: '127.0.0.1', metricsTextfile: '/tmp/x.prom' }),
      metrics: {
        address: '127.0.0.1',
        serving: false,
        textfile: '/tmp/x.prom',
        textfileWriting: false,
        textfileProblem: 'unsafe dir',
        at: '',
      },
    });
    expect(renderStatusText(off)).toMatch(/^metrics +textfile off: unsafe dir$/m);
    // A record from other settings (an older run's) is not believed.
    const other = buildStatus({
      ...base,
      config: config({ metricsPort: 9101, metricsAddress: '10.0.0.5' }),
      metrics: { port: 9101, address: '127.0.0.1', serving: true, at: '' },
    });
    expect(renderStatusText(other)).toMatch(/^metrics +off: run is not serving them$/m);
  });
});
