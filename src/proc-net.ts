/**
 * The kernel's TCP socket tables (/proc/net/tcp and tcp6), pure: each socket's state, ports, remote
 * address and inode, for what listens on a port and what a process holds established.
 */

export interface TcpConnection {
  remoteAddress: string;
  remotePort: number;
  localPort: number;
}

interface TcpSocket extends TcpConnection {
  /** The kernel's state in hex: 01 ESTABLISHED, 0A LISTEN. */
  state: string;
  /** As a process's fd links name it: `socket:[N]`. */
  inode: string;
}

/** Every socket of a table (`sl local_address rem_address st … inode`; addresses hex, ports after ':'). */
export function tcpSockets(table: string): TcpSocket[] {
  const out: TcpSocket[] = [];
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10) continue;
    const [local, remote] = [cols[1]!, cols[2]!];
    out.push({
      state: cols[3]!,
      inode: `socket:[${cols[9]}]`,
      remoteAddress: hexAddress(remote.slice(0, remote.lastIndexOf(':'))),
      remotePort: parseInt(remote.slice(remote.lastIndexOf(':') + 1), 16),
      localPort: parseInt(local.slice(local.lastIndexOf(':') + 1), 16),
    });
  }
  return out;
}

/** The ESTABLISHED connections of a table whose socket is among `inodes` (a process's `socket:[N]` fd links). */
export function establishedConnections(table: string, inodes: ReadonlySet<string>): TcpConnection[] {
  return tcpSockets(table)
    .filter((s) => s.state === '01' && inodes.has(s.inode))
    .map(({ remoteAddress, remotePort, localPort }) => ({ remoteAddress, remotePort, localPort }));
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
