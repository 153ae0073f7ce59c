/**
 * What a command asks of Docker from the entry, before the program is loaded (adapters/early-docker-info.ts):
 * `status`'s /info. Small on purpose: the entry loads it for every command.
 */
import { askDockerInfo, type EarlyDockerInfo } from '../adapters/early-docker-info.js';
import { DEFAULT_DOCKER_HOST, PREFIX } from '../config-defaults.js';

export function earlyAsks(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): EarlyDockerInfo | undefined {
  if (argv[0] !== 'status') return undefined;
  // The environment overrides the file. A DOCKER_HOST set only in the file differs from this guess: then
  // the answer goes unused (DockerodeDocker takes only its own host's) and status asks again.
  return askDockerInfo(env[`${PREFIX}DOCKER_HOST`] ?? DEFAULT_DOCKER_HOST);
}
