/**
 * A host for whole-CLI runs against the private dockerd: a network namespace of its own (host rules
 * untouched, loopback up), a stand-in systemctl for ecs.service whose state lives in `<dir>/unit`
 * ("active enabled" to begin with), and the agent's ecs.config.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cliEnv } from './docker-state.js';
import type { DockerdInfo } from './private-dockerd.js';

export interface StandInHost {
  ns: string;
  dir: string;
  /** The CLI's environment: stand-in systemctl first on PATH, the stand-in agent, this host's ecs.config. */
  env(extra?: Record<string, string>): Record<string, string>;
  remove(): void;
}

export function standInHost(d: DockerdInfo, agentImage: string, name: string): StandInHost {
  const ns = `egv-${name}-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']); // like a host: loopback up (metrics listen there)
  const dir = mkdtempSync(`/tmp/egv-${name}-`);
  writeFileSync(`${dir}/unit`, 'active enabled\n');
  writeFileSync(
    `${dir}/systemctl`,
    `#!/bin/sh
# What systemd's notify socket each call inherited (none, or ecs-gvisor leaks it to its children).
echo "NOTIFY_SOCKET=\${NOTIFY_SOCKET:-}" >> ${dir}/systemctl-env
for a; do unit=$a; done
[ "$unit" = ecs.service ] || { [ "$1" = show ] && printf 'LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n'; exit 0; }
read active file < ${dir}/unit
case "$1" in
  show) load=loaded; [ "$file" = masked ] && load=masked; printf 'LoadState=%s\\nActiveState=%s\\nUnitFileState=%s\\n' $load $active $file; exit 0 ;;
  stop) active=inactive ;; disable) file=disabled ;; mask) file=masked ;; unmask) file=disabled ;; enable) file=enabled ;; start) active=active ;;
esac
echo "$active $file" > ${dir}/unit
`,
  );
  chmodSync(`${dir}/systemctl`, 0o755);
  writeFileSync(`${dir}/ecs.config`, 'ECS_CLUSTER=prod\n');
  return {
    ns,
    dir,
    env: (extra = {}) =>
      cliEnv(d, {
        PATH: `${dir}:${process.env.PATH}`,
        ECS_GVISOR_AGENT_IMAGE: agentImage,
        ECS_GVISOR_ECS_CONFIG: `${dir}/ecs.config`,
        ECS_GVISOR_ECS_INSTANCE_CONFIG: `${dir}/none`,
        ECS_GVISOR_AGENT_CACHE_DIR: `${dir}/cache`,
        ...extra,
      }),
    remove: () => execFileSync('ip', ['netns', 'del', ns]),
  };
}
