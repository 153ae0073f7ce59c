import { describe, expect, it } from 'vitest';
import { planEcsInitRestore, planEcsInitStop, reloadAfter } from '../../src/ecs-init/ecs-init-step.js';

const s = (load: string, active: string, fileState: string) => ({ load, active, fileState });

describe('ecs-init plans', () => {
  it('stops, disables and masks only what needs it', () => {
    expect(planEcsInitStop(s('loaded', 'active', 'enabled'), true)).toEqual(['stop', 'disable', 'mask']);
    expect(planEcsInitStop(s('loaded', 'failed', 'enabled'), true)).toEqual(['disable', 'mask']);
    expect(planEcsInitStop(s('loaded', 'activating', 'disabled'), false)).toEqual(['stop']);
    expect(planEcsInitStop(s('masked', 'inactive', 'masked'), true)).toEqual([]);
    expect(planEcsInitStop(s('not-found', 'inactive', ''), true)).toEqual([]);
    expect(planEcsInitStop(undefined, true)).toEqual([]);
  });

  it('does not plan a mask systemd would refuse: the unit file is in /etc/systemd/system', () => {
    const own = { ...s('loaded', 'active', 'enabled'), fragmentPath: '/etc/systemd/system/ecs.service' };
    expect(planEcsInitStop(own, true)).toEqual(['stop', 'disable']);
    expect(planEcsInitStop({ ...own, active: 'inactive', fileState: 'disabled' }, true)).toEqual([]);
    expect(planEcsInitStop({ ...own, fragmentPath: '/usr/lib/systemd/system/ecs.service' }, true)).toEqual(['stop', 'disable', 'mask']);
  });

  it('restores what was taken away', () => {
    expect(planEcsInitRestore(s('masked', 'inactive', 'masked'))).toEqual(['unmask', 'enable', 'start']);
    expect(planEcsInitRestore(s('loaded', 'inactive', 'disabled'))).toEqual(['enable', 'start']);
    expect(planEcsInitRestore(s('loaded', 'active', 'enabled'))).toEqual([]);
    expect(planEcsInitRestore(s('not-found', 'inactive', ''))).toEqual([]);
    expect(planEcsInitRestore(undefined)).toEqual([]);
  });

  it('reloads systemd once, after the last unit-file change of a run', () => {
    expect(reloadAfter(['stop', 'disable', 'mask'])).toEqual([true, false, true]);
    expect(reloadAfter(['unmask', 'enable', 'start'])).toEqual([false, true, true]);
    expect(reloadAfter(['stop', 'disable'])).toEqual([true, true]);
    expect(reloadAfter(['mask'])).toEqual([true]);
    expect(reloadAfter(['stop'])).toEqual([true]);
    expect(reloadAfter([])).toEqual([]);
  });
});
