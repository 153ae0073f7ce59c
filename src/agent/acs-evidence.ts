/**
 * Evidence on the instance itself of the agent's connection to ACS (its control channel, which ECS's
 * `agentConnected` reports), read without asking ECS. Two sources, pure here:
 * - the agent's own log lines about that connection ("Connected to ACS endpoint", "ACS WebSocket
 *   connection closed", "Disconnected from ACS", "Failed to connect to ACS"), the same words in its
 *   logfmt lines (1.6x on) and its older seelog lines;
 * - the agent process's established TCP connections (/proc/<pid>/net/tcp and tcp6, the sockets among
 *   its file descriptors), the kernel's word for what the log says.
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

export interface TcpConnection {
  remoteAddress: string;
  remotePort: number;
  localPort: number;
}

/**
 * The ESTABLISHED connections in /proc/net/tcp or tcp6 text whose socket inode is among `inodes` (the
 * `socket:[N]` links of a process's file descriptors).
 */
export function establishedConnections(table: string, inodes: ReadonlySet<string>): TcpConnection[] {
  const out: TcpConnection[] = [];
  for (const line of table.split('\n').slice(1)) {
    // sl local_address rem_address st … inode; state 01 is ESTABLISHED; addresses are hex, ports after ':'.
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10 || cols[3] !== '01' || !inodes.has(`socket:[${cols[9]}]`)) continue;
    const [local, remote] = [cols[1]!, cols[2]!];
    out.push({
      remoteAddress: hexAddress(remote.slice(0, remote.lastIndexOf(':'))),
      remotePort: parseInt(remote.slice(remote.lastIndexOf(':') + 1), 16),
      localPort: parseInt(local.slice(local.lastIndexOf(':') + 1), 16),
    });
  }
  return out;
}

/** The kernel's hex address (IPv4: one little-endian word; IPv6: four of them) as text. */
function hexAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => parseInt(b, 16)));
  if (bytes.length === 4) return bytes.join('.');
  const v4mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (v4mapped) return bytes.slice(12).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}
