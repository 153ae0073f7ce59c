import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { removeMetricsTextfile, writeMetricsTextfile } from '../../src/adapters/metrics-textfile.js';

describe('the node_exporter textfile', () => {
  it('is replaced whole, 0644 whatever the umask, leaving no temporary file; removed on stop', async () => {
    const dir = mkdtempSync('/tmp/egv-textfile-');
    chmodSync(dir, 0o755);
    const path = `${dir}/ecs_gvisor.prom`;
    writeFileSync(`${path}.${process.pid}.tmp`, 'left by a crash');
    const umask = process.umask(0o077);
    try {
      await writeMetricsTextfile(path, 'a_total 1\n');
      await writeMetricsTextfile(path, 'a_total 2\n');
    } finally {
      process.umask(umask);
    }
    expect(readFileSync(path, 'utf8')).toBe('a_total 2\n');
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir)).toEqual(['ecs_gvisor.prom']);
    await removeMetricsTextfile(path);
    expect(existsSync(path)).toBe(false);
    await removeMetricsTextfile(path); // gone already: nothing to do
  });

  it('refuses a directory others can write to, a link in place of the directory, or none, naming the key', async () => {
    const base = mkdtempSync('/tmp/egv-textfile-');
    const open = `${base}/open`;
    mkdirSync(open);
    chmodSync(open, 0o777);
    const real = `${base}/real`;
    mkdirSync(real, { mode: 0o755 });
    symlinkSync(real, `${base}/link`);
    for (const dir of [open, `${base}/link`, `${base}/missing`]) {
      await expect(writeMetricsTextfile(`${dir}/x.prom`, 'a 1\n')).rejects.toMatchObject({
        code: 'METRICS_TEXTFILE_UNSAFE',
        message: expect.stringContaining(`ECS_GVISOR_METRICS_TEXTFILE=${dir}/x.prom`),
      });
    }
    expect(readdirSync(open)).toEqual([]);
    expect(readdirSync(real)).toEqual([]);
  });
});
