import { describe, expect, it } from 'vitest';
import { AGENT_BACKOFF, Backoff, decideExit, desiredImageTarball } from '../../src/agent/restart-policy.js';

describe('exit codes', () => {
  it('follows ecs-init’s contract', () => {
    expect(decideExit(0).kind).toBe('done');
    expect(decideExit(5).kind).toBe('terminal');
    expect(decideExit(42).kind).toBe('update');
    for (const c of [1, 2, 137, 255]) expect(decideExit(c).kind).toBe('restart');
  });

  it('finds the desired image tarball without leaving the cache dir', () => {
    expect(desiredImageTarball('/var/cache/ecs', '/var/cache/ecs/ecs-agent-v1.90.0.tar\nextra')).toBe(
      '/var/cache/ecs/ecs-agent-v1.90.0.tar',
    );
    expect(desiredImageTarball('/var/cache/ecs', '../../etc/shadow')).toBe('/var/cache/ecs/shadow');
    expect(desiredImageTarball('/var/cache/ecs', '\n')).toBeUndefined();
    expect(desiredImageTarball('/var/cache/ecs', 'dir/..')).toBeUndefined();
    expect(desiredImageTarball('/var/cache/ecs', undefined)).toBeUndefined();
  });
});

describe('Backoff', () => {
  it('grows 500 ms → 15 s without jitter and stays capped', () => {
    const b = new Backoff({ ...AGENT_BACKOFF, jitter: 0 });
    expect(Array.from({ length: 8 }, () => b.next(100))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  });

  it('resets after a healthy run (ecs-init never does)', () => {
    const b = new Backoff({ ...AGENT_BACKOFF, jitter: 0 });
    for (let i = 0; i < 6; i++) b.next(1000);
    expect(b.next(1000)).toBe(15000);
    expect(b.next(60_000)).toBe(500);
    expect(b.next(1000)).toBe(1000);
  });

  it('steps back once per 10 s of a shorter run: occasional kills come back at once, a crash loop still reaches the cap', () => {
    const b = new Backoff({ ...AGENT_BACKOFF, jitter: 0 });
    // Killed every 12 s or so: every restart after the minimum delay.
    expect(Array.from({ length: 5 }, () => b.next(12_000))).toEqual([500, 500, 500, 500, 500]);
    // Dying within 9 s: no step back, so it grows to the cap.
    expect(Array.from({ length: 7 }, () => b.next(9_000))).toEqual([1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    // A 25 s run takes two steps back from the cap's attempt count (7 → 5): 15 s is still the cap there.
    expect(b.next(25_000)).toBe(15000);
    expect(b.next(35_000)).toBe(8000);
  });

  it('jitters within ±20 % and never past the cap', () => {
    for (const r of [0, 0.5, 0.999]) {
      const b = new Backoff(AGENT_BACKOFF, () => r);
      const first = b.next(0);
      expect(first).toBeGreaterThanOrEqual(400);
      expect(first).toBeLessThanOrEqual(600);
      for (let i = 0; i < 10; i++) expect(b.next(0)).toBeLessThanOrEqual(15000);
    }
  });
});
