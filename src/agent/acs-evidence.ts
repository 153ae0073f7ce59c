/**
 * Evidence on the instance itself of the agent's connection to ACS (its control channel, which ECS's
 * `agentConnected` reports), read without asking ECS. Two sources, pure here:
 * - the agent's own log lines about that connection ("Connected to ACS endpoint", "ACS WebSocket
 *   connection closed", "Disconnected from ACS", "Failed to connect to ACS"), the same words in its
 *   logfmt lines (1.6x on) and its older seelog lines;
 * - the agent process's established TCP connections (HostPort.connectionsOf, proc-net.ts), the
 *   kernel's word for what the log says.
 */

export type AcsState = 'connected' | 'disconnected';

export interface AcsEvent {
  state: AcsState;
  /** The line's own time, when it has one (logfmt `time=`, or seelog's leading timestamp). */
  at?: string;
}

const CONNECTED = /Connected to ACS endpoint/;
const DISCONNECTED = /ACS WebSocket connection closed|Disconnected from ACS|Failed to connect to ACS|ACS: Unable to discover poll endpoint/;

/** The ACS events in the agent's log text, oldest first. */
export function acsEvents(text: string): AcsEvent[] {
  const out: AcsEvent[] = [];
  for (const line of text.split('\n')) {
    const state = CONNECTED.test(line) ? 'connected' : DISCONNECTED.test(line) ? 'disconnected' : undefined;
    if (!state) continue;
    const at = /\btime=("?)([0-9T:.\-+Z]+)\1/.exec(line)?.[2] ?? /^(\d{4}-\d\d-\d\dT[0-9:.]+Z?)/.exec(line)?.[1];
    out.push(at ? { state, at } : { state });
  }
  return out;
}
