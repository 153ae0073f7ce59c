import type { TestProject } from 'vitest/node';
import { AGENT_STANDIN_IMAGE, BUSYBOX_IMAGE, buildBusyboxImage } from './images.js';
import { type DockerdInfo, startPrivateDockerd, stopPrivateDockerd } from './private-dockerd.js';

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
