/**
 * Evidence on the instance itself of the agent's connection to ACS (its control channel, which ECS's
 * `agentConnected` reports), read without asking ECS. Two sources, pure here:
 * - the agent's own log lines about that connection ("Connected to ACS endpoint", "ACS WebSocket
 *   connection closed", "Disconnected from ACS", "Failed to connect to ACS"), the same words in its
 *   logfmt lines (1.6x on) and its older seelog lines. They say when, and (most of them) for which
 *   container instance; the line "Establishing a Websocket connection" names the endpoint.
 * - the agent process's established TCP connections (HostPort.connectionsOf, proc-net.ts): the
 *   kernel's word. It holds for any agent version (ACS is a long-lived websocket by design), and it
 *   catches what the log cannot: an agent too wedged to write, whose peer has closed.
 *
 * Why both, and the log first: the kernel alone cannot tell ACS's connection from the telemetry one or an
 * API call's keep-alive to the same port, and knows nothing of which registration it serves; the log
 * alone can be silent. So: connected when the log's last word is "connected" and the kernel holds a
 * connection to the endpoint; disconnected when either says it is gone; unknown without the log's word
 * (an agent whose wording changed, a log elsewhere), when ECS is polled as it was before this evidence.
 */

export type AcsState = 'connected' | 'disconnected';
/** What the instance's own evidence says; `unknown`: no word from the log (ECS is polled instead). */
export type AcsLocal = AcsState | 'unknown';

export interface AcsEvent {
  state: AcsState;
  /** The line's own time, when it has one (logfmt `time=`, or seelog's leading timestamp). */
  at?: string;
  /** The container instance the line is about, when it names one. */
  arn?: string;
}

const CONNECTED = /Connected to ACS endpoint/;
const DISCONNECTED =
  /ACS WebSocket connection closed|Disconnected from ACS|Failed to connect to ACS|ACS: Unable to discover poll endpoint|Container instance is deregistered/;

/** The ACS events in the agent's log text, oldest first. */
export function acsEvents(text: string): AcsEvent[] {
  const out: AcsEvent[] = [];
  for (const line of text.split('\n')) {
    const state = CONNECTED.test(line) ? 'connected' : DISCONNECTED.test(line) ? 'disconnected' : undefined;
    if (!state) continue;
    const at = /\btime=("?)([0-9T:.\-+Z]+)\1/.exec(line)?.[2] ?? /^(\d{4}-\d\d-\d\dT[0-9:.]+Z?)/.exec(line)?.[1];
    const arn = /\bcontainerInstanceARN="?(arn:[^"\s]+)/.exec(line)?.[1];
    out.push({ state, ...(at ? { at } : {}), ...(arn ? { arn } : {}) });
  }
  return out;
}

export interface AcsEndpoint {
  host: string;
  port: number;
}

/**
 * The ACS endpoint the agent last dialled, from its "Establishing a Websocket connection" line: the URL
 * whose query names `containerInstanceArn` (the telemetry channel's names `containerInstance`).
 */
export function acsEndpointOf(text: string): AcsEndpoint | undefined {
  let found: AcsEndpoint | undefined;
  for (const m of text.matchAll(/Establishing a Websocket connection.*?\burl="?((?:https?|wss?):\/\/[^"\s]+)/g)) {
    let url: URL;
    try {
      url = new URL(m[1]!);
    } catch {
      continue;
    }
    if (!url.searchParams.has('containerInstanceArn')) continue;
    const secure = url.protocol === 'https:' || url.protocol === 'wss:';
    found = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (secure ? 443 : 80)) };
  }
  return found;
}

/** The kernel's word: the agent holds a connection to the endpoint, holds none, or cannot be asked. */
export type KernelWord = 'held' | 'none' | 'unknown';

/** The two sources as one word, with why (for status). */
export function judgeAcs(log: AcsEvent | undefined, kernel: KernelWord): { state: AcsLocal; why: string } {
  if (!log) return { state: 'unknown', why: 'the agent’s log has said nothing of ACS yet' };
  const when = log.at ? ` (${log.at})` : '';
  if (log.state === 'disconnected') return { state: 'disconnected', why: `the agent’s log says its ACS connection is gone${when}` };
  if (kernel === 'none')
    return { state: 'disconnected', why: `the agent’s log says connected${when}, but it holds no connection to the ACS endpoint` };
  if (kernel === 'held') return { state: 'connected', why: `the agent’s log says connected${when}, and it holds the connection` };
  return { state: 'connected', why: `the agent’s log says connected${when}` };
}
