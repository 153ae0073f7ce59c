/**
 * The end-to-end run's outer world: a private dockerd to hold the simulated instances, the instance
 * image, the images an instance needs (the stand-in agent and the real one, each as amazon/amazon-ecs-agent:latest, a busybox
 * for task-like containers) saved as tarballs, the fakes bundled for the instance's node, and the
 * release tarball `npm run package` built.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import type { TestProject } from 'vitest/node';
import { AGENT_STANDIN_IMAGE, BUSYBOX_IMAGE, buildBusyboxImage } from '../harness/images.js';
import { startPrivateDockerd, stopPrivateDockerd } from '../harness/private-dockerd.js';
import { importRealAgent } from '../harness/real-agent.js';
import { importInstanceImage } from './instance-image.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../../', import.meta.url));

export interface E2eWorld {
  dockerHost: string;
  image: string;
  /** fakes.mjs, ecs-agent.tar (the stand-in), real-ecs-agent.tar (the real agent), busybox.tar, release.tar.gz */
  dir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    e2e: E2eWorld;
  }
}

/** The outer private dockerd, the instance image and the files every instance gets; `stop` undoes it. */
export async function startE2eWorld(
  log: (line: string) => void = (l) => process.stderr.write(`e2e: ${l}\n`),
): Promise<{ world: E2eWorld; stop: () => Promise<void> }> {
  const { version } = (await import('../../package.json', { with: { type: 'json' } })).default;
  // This machine's architecture's: the instance runs its executable.
  const release = `${repo}dist/release/ecs-gvisor-${version}-linux-${process.arch}.tar.gz`;
  if (!existsSync(release)) throw new Error(`${release} is missing: run \`npm run package\` first (npm test does)`);
  const dockerd = await startPrivateDockerd();
  const dir = mkdtempSync('/tmp/egv-e2e-world-');
  const docker = async (args: string[]) => (await run('docker', ['-H', dockerd.host, ...args], { maxBuffer: 64 << 20 })).stdout;
  const stop = async () => {
    await stopPrivateDockerd(dockerd);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await buildBusyboxImage(dockerd.host);
    await docker(['tag', AGENT_STANDIN_IMAGE, 'amazon/amazon-ecs-agent:latest']);
    await docker(['save', '-o', `${dir}/ecs-agent.tar`, 'amazon/amazon-ecs-agent:latest']);
    // The real agent, under the same name, for the instance that runs it (the AMI's cache has it).
    await importRealAgent(dockerd.socket);
    await docker(['save', '-o', `${dir}/real-ecs-agent.tar`, 'amazon/amazon-ecs-agent:latest']);
    await docker(['tag', BUSYBOX_IMAGE, 'busybox:latest']);
    await docker(['save', '-o', `${dir}/busybox.tar`, 'busybox:latest']);
    await run('cp', [release, `${dir}/release.tar.gz`]);
    await build({
      entryPoints: [`${repo}test/e2e/fakes-main.ts`],
      outfile: `${dir}/fakes.mjs`,
      bundle: true,
      platform: 'node',
      target: 'node24',
      format: 'esm',
      logLevel: 'warning',
    });
    const image = await importInstanceImage(docker, log);
    return { world: { dockerHost: dockerd.host, image, dir }, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { world, stop } = await startE2eWorld();
  project.provide('e2e', world);
  return stop;
}
