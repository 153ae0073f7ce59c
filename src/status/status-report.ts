/**
 * The status model: one function builds the report `status` prints (text or JSON) from what the state
 * files, Docker and runsc say; status-text.ts renders it. The watch's own summary comes from summary.ts.
 */

import { AGENT_NAME } from '../agent/agent-spec.js';
import type { SupervisorState } from '../agent/supervisor.js';
import type { LifecycleRecord } from '../lifecycle/lifecycle-plan.js';
import type { ContainerState, DockerInfo } from '../ports.js';
import type { RuntimeState } from '../runtime/runtime-step.js';
import { provenEcsModes } from '../watch/attributes.js';
import type { WatchSnapshot } from '../watch/watch-state.js';

export interface StatusReport {
  version: string;
  runtime: {
    name: string;
    runscPath: string;
    runscVersion?: string;
    runscProblem?: string;
    dockerDefaultRuntime?: string;
    dockerProblem?: string;
    /** Docker's cgroup version and driver (where the proof and the audit look for the sandbox's limits). */
    cgroup?: { version: string; driver: string };
    registered: boolean;
    isDefault: boolean;
    /** Proven by a probe, and Docker's live default is still ours. */
    verified: boolean;
    verifiedAt?: string;
    evidence?: RuntimeState['evidence'];
    lastError?: RuntimeState['lastError'];
    /** ECS_GVISOR_NETWORK_POLICY, and the ECS network modes the last proof showed working here. */
    networkPolicy: string;
    networkModes: string[];
  };
  /** Sandbox verified, agent running and (while `run` watches) registered, connected and no audit violation. */
  healthy: boolean;
  summary: string;
  /** Docker's live view of the container, with the supervisor's restarts and holds. */
  agent: WatchSnapshot['agent'] & { container: string };
  registration: Partial<WatchSnapshot['registration']>;
  verdict?: WatchSnapshot['verdict'];
  healing?: WatchSnapshot['healing'];
  audit?: WatchSnapshot['audit'];
  attributes?: WatchSnapshot['attributes'];
  /** Whether `run` is watching (its watch.json is fresh and its process alive). */
  watch: { running: boolean; pid?: number; updatedAt?: string };
  /** Auto Scaling lifecycle: off unless a hook or spot draining is configured; the record of lifecycle.json. */
  lifecycle: { enabled: boolean; launchHook?: string; terminateHook?: string; spotDrain: boolean } & LifecycleRecord;
  /**
   * The metrics endpoint (ECS_GVISOR_METRICS_PORT on _ADDRESS) and textfile (_TEXTFILE), when set:
   * whether `run` serves and writes them, and why not.
   */
  metrics?: {
    port?: number;
    address: string;
    serving: boolean;
    problem?: string;
    textfile?: string;
    textfileWriting?: boolean;
    textfileProblem?: string;
  };
  /** Our network rules as `run` last checked them, and how often it put them back. */
  network?: WatchSnapshot['network'];
  lastErrors: WatchSnapshot['lastErrors'];
}

/** What `run` records about its metrics endpoint and textfile (metrics.json). */
export interface MetricsRecord {
  port?: number;
  address?: string;
  serving: boolean;
  problem?: string;
  textfile?: string;
  /** Whether the last write of the textfile worked (undefined before the first). */
  textfileWriting?: boolean;
  textfileProblem?: string;
  at: string;
}

/** Everything the report is made of, as read (a failed read is its problem text). */
export interface StatusInputs {
  version: string;
  config: {
    runtimeName: string;
    runscPath: string;
    networkPolicy: string;
    lifecycle: { enabled: boolean; launchHook?: string; terminateHook?: string; spotDrain: boolean };
    metricsPort?: number;
    metricsAddress: string;
    metricsTextfile?: string;
  };
  runtimeState?: RuntimeState;
  runsc: { version: string } | { problem: string };
  docker: { info: DockerInfo } | { problem: string };
  /** watch.json, and whether the process that wrote it is alive and wrote it lately. */
  watch?: WatchSnapshot;
  watchLive: boolean;
  supervisor?: SupervisorState;
  container?: ContainerState;
  lifecycle?: LifecycleRecord;
  metrics?: MetricsRecord;
}

export function buildStatus(i: StatusInputs): StatusReport {
  const c = i.config;
  const info = 'info' in i.docker ? i.docker.info : undefined;
  const registered = info ? c.runtimeName in info.runtimes : false;
  const isDefault = info?.defaultRuntime === c.runtimeName;
  const saved = i.runtimeState;
  const verified = Boolean(saved?.verified && isDefault && registered);
  const w = i.watchLive ? i.watch : undefined;
  // The supervisor's own file is the authority on restarts and holds; it is written as they happen.
  const sup = i.supervisor ?? w?.agent;
  const container = i.container;
  const agent: StatusReport['agent'] = {
    container: AGENT_NAME,
    id: container?.id,
    runtime: container?.runtime,
    state: container?.status,
    running: container?.running ?? false,
    health: container?.health,
    restarts: sup?.restarts ?? 0,
    held: sup?.held,
    stopped: sup?.stopped,
    lastExit: sup?.lastExit && { code: sup.lastExit.code, decision: sup.lastExit.decision, at: sup.lastExit.at },
  };
  // Only what the watching process recorded for these settings counts.
  const metricsOurs =
    i.watchLive &&
    i.metrics?.port === c.metricsPort &&
    (i.metrics?.address ?? '127.0.0.1') === c.metricsAddress &&
    i.metrics?.textfile === c.metricsTextfile;
  return {
    version: i.version,
    healthy: verified && agent.running && (w ? w.healthy : true),
    // The watch's line is what it last saw; with Docker not answering now, the rows below cannot agree
    // with it, so the first line says which is which.
    summary: !info
      ? `Docker is not answering (${'problem' in i.docker ? i.docker.problem : '?'}); ${w ? `the watch last saw: ${w.summary}` : 'run is not watching'}`
      : w
        ? w.summary
        : `${verified ? 'sandbox verified' : 'sandbox NOT verified'}; agent ${agent.running ? 'running' : (agent.state ?? 'absent')}; run is not watching`,
    runtime: {
      name: c.runtimeName,
      runscPath: c.runscPath,
      runscVersion: 'version' in i.runsc ? i.runsc.version : undefined,
      runscProblem: 'problem' in i.runsc ? i.runsc.problem : undefined,
      dockerDefaultRuntime: info?.defaultRuntime,
      dockerProblem: 'problem' in i.docker ? i.docker.problem : undefined,
      cgroup: info && { version: info.cgroupVersion, driver: info.cgroupDriver },
      registered,
      isDefault,
      verified,
      verifiedAt: saved?.verifiedAt,
      evidence: saved?.evidence,
      lastError: saved?.lastError,
      networkPolicy: c.networkPolicy,
      networkModes: verified ? provenEcsModes(saved?.evidence?.networks) : [],
    },
    agent,
    // Last known even when run has stopped: the instance's registration outlives the process.
    registration: i.watch?.registration ?? {},
    verdict: w?.verdict,
    healing: w?.healing,
    audit: w?.audit,
    attributes: i.watch?.attributes,
    network: w?.network,
    watch: { running: i.watchLive, pid: i.watch?.pid, updatedAt: i.watch?.updatedAt },
    lifecycle: { ...c.lifecycle, ...(c.lifecycle.enabled ? i.lifecycle : undefined) },
    metrics:
      c.metricsPort === undefined && c.metricsTextfile === undefined
        ? undefined
        : {
            port: c.metricsPort,
            address: c.metricsAddress,
            serving: Boolean(metricsOurs && i.metrics?.serving),
            problem: metricsOurs ? i.metrics?.problem : undefined,
            textfile: c.metricsTextfile,
            textfileWriting: c.metricsTextfile === undefined ? undefined : Boolean(metricsOurs && i.metrics?.textfileWriting),
            textfileProblem: metricsOurs ? i.metrics?.textfileProblem : undefined,
          },
    lastErrors: w?.lastErrors ?? [],
  };
}
