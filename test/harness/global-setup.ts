import type { TestProject } from 'vitest/node';
import { startPrivateDockerd, stopPrivateDockerd, type DockerdInfo } from './private-dockerd.js';
import { AGENT_STANDIN_IMAGE, buildBusyboxImage, BUSYBOX_IMAGE } from './images.js';

declare module 'vitest' {
  export interface ProvidedContext {
    dockerd: DockerdInfo;
    busyboxImage: string;
    agentImage: string;
  }
}

/** One private dockerd for the whole run; integration tests share it one file at a time. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dockerd = await startPrivateDockerd();
  try {
    await buildBusyboxImage(dockerd.host);
  } catch (err) {
    await stopPrivateDockerd(dockerd);
    throw err;
  }
  project.provide('dockerd', dockerd);
  project.provide('busyboxImage', BUSYBOX_IMAGE);
  project.provide('agentImage', AGENT_STANDIN_IMAGE);
  return () => stopPrivateDockerd(dockerd);
}
