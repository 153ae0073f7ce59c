import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { Counter, WatchMetrics } from '../../src/watch/metrics.js';

/** Prometheus's own parser and linter (promtool, from Debian's prometheus): its problems, or '' . */
function promtool(text: string): string {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool: ${r.error.message} (bash scripts/test-deps.sh installs it)`);
  return `${r.stdout}${r.stderr}`.trim() + (r.status === 0 ? '' : ` (exit ${r.status})`);
}

describe('WatchMetrics', () => {
  it('renders what was recorded, in the exposition format, as of the scrape', async () => {
    const m = new WatchMetrics();
    const before = (await m.render()).text;
    // Nothing recorded yet: gauges at 0, the unlabelled counter at 0, labelled counters without series,
    // and no verification timestamp at all (absent, not a sentinel).
    expect(before).toMatch(/^ecs_gvisor_agent_up 0$/m);
    expect(before).toMatch(/^ecs_gvisor_agent_restarts_total 0$/m);
    expect(before).not.toMatch(/^ecs_gvisor_aws_api_calls_total\{/m);
    expect(before).not.toMatch(/^ecs_gvisor_last_verification_timestamp_seconds /m);
    expect(before).toMatch(/^# TYPE ecs_gvisor_last_verification_timestamp_seconds gauge$/m);

    m.agentUp.set(1);
    m.restarts.inc(2);
    m.restarts.inc();
    m.awsCalls.inc({ service: 'ecs', operation: 'DescribeContainerInstances', outcome: 'ok' });
    m.awsCalls.inc({ outcome: 'ok', operation: 'DescribeContainerInstances', service: 'ecs' });
    m.awsCalls.inc({ service: 'ecs', operation: 'DescribeContainerInstances', outcome: 'throttled' });
    m.awsCalls.inc({ service: 'autoscaling', operation: 'CompleteLifecycleAction', outcome: 'ok' });
    m.markVerified(1_733_500_000_500);
    const { text, contentType } = await m.render();
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(text).toMatch(/^ecs_gvisor_agent_up 1$/m);
    expect(text).toMatch(/^ecs_gvisor_agent_restarts_total 3$/m);
    expect(text).toMatch(/^ecs_gvisor_aws_api_calls_total\{service="ecs",operation="DescribeContainerInstances",outcome="ok"\} 2$/m);
    expect(text).toMatch(/^ecs_gvisor_aws_api_calls_total\{service="ecs",operation="DescribeContainerInstances",outcome="throttled"\} 1$/m);
    expect(text).toMatch(/^ecs_gvisor_aws_api_calls_total\{service="autoscaling",operation="CompleteLifecycleAction",outcome="ok"\} 1$/m);
    expect(text).toMatch(/^ecs_gvisor_last_verification_timestamp_seconds 1733500000\.5$/m);
    expect(text).toContain(`ecs_gvisor_build_info{version="${VERSION}",node="${process.versions.node}"} 1\n`);

    // Counters only grow between scrapes; a sandbox no longer proven drops the timestamp.
    m.restarts.inc();
    m.markVerified(undefined);
    const later = (await m.render()).text;
    expect(later).toMatch(/^ecs_gvisor_agent_restarts_total 4$/m);
    expect(later).not.toMatch(/^ecs_gvisor_last_verification_timestamp_seconds /m);
  });

  it('Prometheus’s own parser reads every state of it without a problem, names and help text included', async () => {
    const m = new WatchMetrics();
    expect(promtool((await m.render()).text)).toBe('');
    m.awsCalls.inc({ service: 'ec2', operation: 'DescribeTags', outcome: 'client-error' });
    m.repairs.inc({ kind: 'network' });
    m.limitKills.inc({ limit: 'memory' });
    m.markVerified(1_733_500_000_000);
    const text = (await m.render()).text;
    expect(promtool(text)).toBe('');
    // Each labelled counter's help names the label values it uses.
    expect(text).toMatch(/^# HELP ecs_gvisor_drift_repairs_total .*\(runtime, agent, network\)/m);
    expect(text).toMatch(/^# HELP ecs_gvisor_aws_api_calls_total .*service \(ecs, autoscaling, ec2\)/m);
    // The linter is not a rubber stamp: a sentinel-style counter without _total is refused.
    expect(promtool('# HELP x a\n# TYPE x counter\nx 1\n')).toMatch(/_total/);
  });

  it('writes each metric’s HELP and TYPE, and escapes help text and label values as the format says', async () => {
    const text = (await new WatchMetrics().render()).text;
    expect(text).toContain('# HELP ecs_gvisor_agent_up The agent container is running (1) or not (0).\n# TYPE ecs_gvisor_agent_up gauge\n');
    expect(text).toContain('# TYPE ecs_gvisor_agent_restarts_total counter\n');
    expect(text.endsWith('\n')).toBe(true);
    const c = new Counter('x_total', 'a \\ b\nc', ['k']);
    c.inc({ k: 'say "hi"\\\n' });
    expect(c.samples()).toEqual([{ labels: '{k="say \\"hi\\"\\\\\\n"}', value: 1 }]);
  });
});
