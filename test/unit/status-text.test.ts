import { describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/status/status-report.js';
import { networksRow } from '../../src/status/status-text.js';

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
