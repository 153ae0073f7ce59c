/**
 * What the entry needs of the configuration before the program (and zod) is loaded: config.ts holds the
 * rest and re-exports these.
 */
export const PREFIX = 'ECS_GVISOR_';
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';
