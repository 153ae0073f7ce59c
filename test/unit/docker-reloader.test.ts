/**
 * Locating dockerd: systemd is asked for the docker unit's main PID (an exec of systemctl) only when the
 * process it named last is gone, or its PID now belongs to another process (a different start time).
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DockerReloader } from '../../src/runtime/docker-reloader.js';

describe('DockerReloader.locate', () => {
  it('asks systemd once while the same dockerd runs, and again once it has restarted', async () => {
    const procs = new Map<number, { start: number; argv: string[] }>([[500, { start: 1000, argv: ['/usr/bin/dockerd'] }]]);
    let main = 500;
    let asked = 0;
    const reloader = new DockerReloader(
      {
        docker: {
          info: async () => ({ serverVersion: '', defaultRuntime: 'runc', runtimes: {}, cgroupVersion: '2', cgroupDriver: 'systemd' }),
        },
        files: { readText: async () => undefined },
        host: {
          systemdRunning: async () => true,
          startTime: async (pid) => procs.get(pid)?.start,
          cmdline: async (pid) => procs.get(pid)?.argv,
          signal: () => true,
        },
        services: {
          mainPid: async () => {
            asked++;
            return main;
          },
          reload: async () => {},
        },
        clock: { now: () => 0, sleep: async () => {} },
        log: pino({ level: 'silent' }),
      },
      { pidfile: '/var/run/docker.pid', unit: 'docker.service', timeoutMs: 1000 },
    );
    for (let i = 0; i < 5; i++) expect(await reloader.locate()).toEqual({ pid: 500, cmdline: ['/usr/bin/dockerd'], viaSystemd: true });
    expect(asked).toBe(1);
    // dockerd restarted: a new process (here even under the same PID, with another start).
    procs.set(500, { start: 2000, argv: ['/usr/bin/dockerd'] });
    await reloader.locate();
    expect(asked).toBe(2);
    procs.delete(500);
    procs.set(600, { start: 3000, argv: ['/usr/bin/dockerd', '--debug'] });
    main = 600;
    expect(await reloader.locate()).toEqual({ pid: 600, cmdline: ['/usr/bin/dockerd', '--debug'], viaSystemd: true });
    expect(await reloader.locate()).toMatchObject({ pid: 600 });
    expect(asked).toBe(3);
  });
});
