/**
 * The ecs-init step through the CLI with a stand-in systemctl on PATH that keeps ecs.service's state in
 * a file and records its argv (real systemd is exercised on the simulated instance). Assertions are on
 * the unit's resulting state and the exact argument arrays.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, fstatSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { BUNDLE, runCli } from '../harness/cli.js';

let dir: string;

function fakeSystemctl(initial?: { load: string; active: string; file: string }): void {
  dir = mkdtempSync('/tmp/egv-ecs-init-');
  if (initial) writeFileSync(`${dir}/state`, `LOAD=${initial.load}\nACTIVE=${initial.active}\nFILE=${initial.file}\n`);
  writeFileSync(
    `${dir}/systemctl`,
    `#!/bin/sh
echo "$*" >> ${dir}/argv.log
for a; do unit=$a; done
if [ "$unit" != ecs.service ] || [ ! -f ${dir}/state ]; then
  [ "$1" = show ] && { printf 'LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n'; exit 0; }
  echo "Unit $unit not found." >&2; exit 5
fi
. ${dir}/state
case "$1" in
  show) printf 'LoadState=%s\\nActiveState=%s\\nUnitFileState=%s\\n' "$LOAD" "$ACTIVE" "$FILE"; exit 0 ;;
  stop) [ -f ${dir}/fail-stop ] && { echo "Job for ecs.service failed" >&2; exit 1; }; ACTIVE=inactive ;;
  disable) FILE=disabled ;;
  mask) LOAD=masked; FILE=masked ;;
  unmask) LOAD=loaded; FILE=disabled ;;
  enable) [ "$LOAD" = masked ] && { echo "Unit file is masked." >&2; exit 1; }; FILE=enabled ;;
  start) [ "$LOAD" = masked ] && { echo "Unit is masked." >&2; exit 1; }; ACTIVE=active ;;
  *) exit 1 ;;
esac
printf 'LOAD=%s\\nACTIVE=%s\\nFILE=%s\\n' "$LOAD" "$ACTIVE" "$FILE" > ${dir}/state
`,
  );
  chmodSync(`${dir}/systemctl`, 0o755);
}

const env = (extra: Record<string, string> = {}) => ({
  PATH: `${dir}:${process.env.PATH}`,
  ECS_GVISOR_CONFIG: '/nonexistent/config',
  ECS_GVISOR_STATE_DIR: `${dir}/state-dir`,
  ...extra,
});
const unit = () => readFileSync(`${dir}/state`, 'utf8');
const argv = () => readFileSync(`${dir}/argv.log`, 'utf8').trim().split('\n');

describe('bootstrap --only ecs-init', () => {
  beforeEach(() => fakeSystemctl({ load: 'loaded', active: 'active', file: 'enabled' }));

  it('stops, disables and masks ecs-init, then has nothing left to do', async () => {
    const r = await runCli(['bootstrap', '--only', 'ecs-init'], env());
    expect(r.code).toBe(0);
    expect(unit()).toBe('LOAD=masked\nACTIVE=inactive\nFILE=masked\n');
    expect(argv()).toEqual([
      'show --property=LoadState,ActiveState,UnitFileState,FragmentPath -- ecs.service',
      'stop -- ecs.service',
      // One reload of systemd, after the last unit-file change (each costs ~0.15 s).
      'disable --no-reload -- ecs.service',
      'mask -- ecs.service',
    ]);

    const again = await runCli(['bootstrap', '--only', 'ecs-init'], env());
    expect(again.code).toBe(0);
    expect(argv().slice(4)).toEqual(['show --property=LoadState,ActiveState,UnitFileState,FragmentPath -- ecs.service']);
  });

  it('does not mask when told not to', async () => {
    expect((await runCli(['bootstrap', '--only', 'ecs-init'], env({ ECS_GVISOR_MASK_ECS_INIT: 'false' }))).code).toBe(0);
    expect(unit()).toBe('LOAD=loaded\nACTIVE=inactive\nFILE=disabled\n');
    expect(argv().at(-1)).toBe('disable -- ecs.service'); // the last change: systemd reloads
  });

  it('plan shows the actions and changes nothing', async () => {
    const p = await runCli(['plan', '--only', 'ecs-init'], env());
    expect(p.code).toBe(0);
    expect(p.stdout).toContain('actions: systemctl stop, systemctl disable, systemctl mask');
    expect(unit()).toBe('LOAD=loaded\nACTIVE=active\nFILE=enabled\n');
  });

  it('rollback unmasks, enables and starts it again without waiting on it', async () => {
    expect((await runCli(['bootstrap', '--only', 'ecs-init'], env())).code).toBe(0);
    const r = await runCli(['rollback', '--only', 'ecs-init'], env());
    expect(r.code).toBe(0);
    expect(unit()).toBe('LOAD=loaded\nACTIVE=active\nFILE=enabled\n');
    expect(argv().slice(-3)).toEqual(['unmask --no-reload -- ecs.service', 'enable -- ecs.service', 'start --no-block -- ecs.service']);
  });

  it('reports a failing systemctl with exit 4', async () => {
    writeFileSync(`${dir}/fail-stop`, '');
    const r = await runCli(['bootstrap', '--only', 'ecs-init'], env());
    expect(r.code).toBe(4);
    expect(r.stderr).toBe('ecs-gvisor: systemctl stop -- ecs.service failed (exit 1): Job for ecs.service failed.\n');
  });
});

describe('hosts without ecs-init', () => {
  it('a missing unit is fine', async () => {
    fakeSystemctl(undefined);
    const r = await runCli(['bootstrap', '--only', 'ecs-init'], env());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ecs-init unit not installed');
    expect(argv()).toHaveLength(1);
  });

  it('logs with journald priority prefixes when stdout is the journal stream systemd named, plain JSON otherwise', async () => {
    dir = mkdtempSync('/tmp/egv-ecs-init-');
    const out = `${dir}/stdout`;
    const run = (journal: (st: { dev: number; ino: number }) => string | undefined) => {
      const fd = openSync(out, 'w');
      const st = fstatSync(fd);
      const stream = journal(st);
      spawnSync(process.execPath, [BUNDLE, 'bootstrap', '--only', 'ecs-init'], {
        env: { ...env(), PATH: dir, ...(stream ? { JOURNAL_STREAM: stream } : {}) },
        stdio: ['ignore', fd, 'ignore'],
      });
      closeSync(fd);
      return readFileSync(out, 'utf8').trim().split('\n');
    };
    const journal = run((st) => `${st.dev}:${st.ino}`);
    expect(journal.length).toBeGreaterThan(1);
    for (const line of journal) expect(line).toMatch(/^<[2-7]>\{"level":"/);
    expect(journal.find((l) => l.includes('"msg":"ecs-gvisor starting"'))).toMatch(/^<6>/);
    // Another stream (stdout redirected elsewhere): plain JSON lines.
    for (const line of run((st) => `${st.dev}:${st.ino + 1}`)) expect(line).toMatch(/^\{"level":"/);
    for (const line of run(() => undefined)) expect(line).toMatch(/^\{"level":"/);
  });

  it('no systemd at all is fine', async () => {
    dir = mkdtempSync('/tmp/egv-ecs-init-');
    const r = await runCli(['bootstrap', '--only', 'ecs-init'], { ...env(), PATH: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('no systemd here');
  });
});
