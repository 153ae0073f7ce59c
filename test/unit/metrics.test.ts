import { describe, expect, it } from 'vitest';
import { Counter, WatchMetrics } from '../../src/watch/metrics.js';

describe('WatchMetrics', () => {
  it('renders what was recorded, in the exposition format, as of the scrape', async () => {
    let now = 100_000;
    const m = new WatchMetrics(() => now);
    const before = (await m.render()).text;
    // Nothing recorded yet: gauges at 0, the unlabelled counter at 0, labelled counters without series.
    expect(before).toMatch(/^ecs_gvisor_agent_up 0$/m);
    expect(before).toMatch(/^ecs_gvisor_agent_restarts_total 0$/m);
    expect(before).not.toMatch(/^ecs_gvisor_ecs_api_calls_total\{/m);
    expect(before).toMatch(/^ecs_gvisor_seconds_since_verification -1$/m);

    m.agentUp.set(1);
    m.restarts.inc(2);
    m.restarts.inc();
    m.ecsCalls.inc({ operation: 'DescribeContainerInstances', outcome: 'ok' });
    m.ecsCalls.inc({ outcome: 'ok', operation: 'DescribeContainerInstances' });
    m.ecsCalls.inc({ operation: 'DescribeContainerInstances', outcome: 'throttled' });
    m.markVerified(40_000);
    const { text, contentType } = await m.render();
    expect(contentType).toMatch(/^text\/plain/);
    expect(text).toMatch(/^ecs_gvisor_agent_up 1$/m);
    expect(text).toMatch(/^ecs_gvisor_agent_restarts_total 3$/m);
    expect(text).toMatch(/^ecs_gvisor_ecs_api_calls_total\{operation="DescribeContainerInstances",outcome="ok"\} 2$/m);
    expect(text).toMatch(/^ecs_gvisor_ecs_api_calls_total\{operation="DescribeContainerInstances",outcome="throttled"\} 1$/m);
    expect(text).toMatch(/^ecs_gvisor_seconds_since_verification 60$/m);

    // Counters only grow between scrapes; the clock is read at each.
    now += 5_000;
    m.restarts.inc();
    const later = (await m.render()).text;
    expect(later).toMatch(/^ecs_gvisor_agent_restarts_total 4$/m);
    expect(later).toMatch(/^ecs_gvisor_seconds_since_verification 65$/m);
  });

  it('writes each metric’s HELP and TYPE, and escapes help text and label values as the format says', async () => {
    const text = (await new WatchMetrics(() => 0).render()).text;
    expect(text).toContain('# HELP ecs_gvisor_agent_up The agent container is running (1) or not (0).\n# TYPE ecs_gvisor_agent_up gauge\n');
    expect(text).toContain('# TYPE ecs_gvisor_agent_restarts_total counter\n');
    expect(text.endsWith('\n')).toBe(true);
    const c = new Counter('x_total', 'a \\ b\nc', ['k']);
    c.inc({ k: 'say "hi"\\\n' });
    expect(c.samples()).toEqual([{ labels: '{k="say \\"hi\\"\\\\\\n"}', value: 1 }]);
  });
});
