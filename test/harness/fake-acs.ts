/**
 * A fake ACS (the ECS agent's task and control channel) on 127.0.0.1, that the real agent connects to: a
 * WebSocket server of its own (RFC 6455, text frames, ping/pong and close; no extensions), since the
 * agent dials `ws://` for an `http://` endpoint from DiscoverPollEndpoint. It sends ACS's heartbeat so
 * the agent keeps the connection (it closes one idle for a minute or two), records what connected, and
 * lets a test cut the connections and refuse new ones, then allow them again.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface AcsConnection {
  at: number;
  /** The query the agent sent: clusterArn, containerInstanceArn, agentVersion, seqNum, … */
  query: Record<string, string>;
  /** The local port of the agent's end (its socket in /proc/net/tcp). */
  remotePort: number;
  closedAt?: number;
  /** The message types the agent sent (HeartbeatAckRequest, …). */
  received: string[];
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export class FakeAcs {
  readonly connections: AcsConnection[] = [];
  private readonly sockets = new Set<Socket>();
  private refusing = false;
  private timer?: NodeJS.Timeout;
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** Listen on 127.0.0.1 (an ephemeral port); heartbeats every `heartbeatMs`. */
  static async start(heartbeatMs = 10_000): Promise<FakeAcs> {
    const server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as AddressInfo).port;
    const acs = new FakeAcs(server, `http://127.0.0.1:${port}/`);
    server.on('upgrade', (req, socket) => acs.upgrade(req, socket as Socket));
    acs.timer = setInterval(() => acs.heartbeat(), heartbeatMs);
    acs.timer.unref();
    return acs;
  }

  /** The connections open now. */
  get open(): AcsConnection[] {
    return this.connections.filter((c) => c.closedAt === undefined);
  }

  /** Whether the agent of `arn` holds an ACS connection now (its telemetry one does not count). */
  connected(arn: string): boolean {
    return this.open.some((c) => c.query.containerInstanceArn === arn);
  }

  /**
   * Send a task to the agent of `arn` as ACS does (a PayloadMessage on its connection): what ECS would
   * place here. `task` is the payload's task (arn, family, version, desiredStatus, containers, cpu, memory…).
   */
  sendTask(arn: string, cluster: string, task: Record<string, unknown>): void {
    const conn = this.open.find((c) => c.query.containerInstanceArn === arn);
    const socket = conn && [...this.sockets].find((s) => s.remotePort === conn.remotePort);
    if (!socket) throw new Error(`no ACS connection of ${arn}`);
    this.send(socket, {
      type: 'PayloadMessage',
      message: {
        messageId: `payload-${++seq}`,
        clusterArn: cluster,
        containerInstanceArn: arn,
        seqNum: seq,
        generatedAt: Date.now(),
        tasks: [task],
      },
    });
  }

  /** Drop every connection (no close frame: as a network path that went away) and refuse new ones. */
  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
    for (const c of this.open) c.closedAt = Date.now();
  }

  /** Accept connections again. */
  restore(): void {
    this.refusing = false;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.server.close(() => res()));
  }

  private upgrade(req: IncomingMessage, socket: Socket): void {
    const key = req.headers['sec-websocket-key'];
    if (this.refusing || typeof key !== 'string') {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1').update(`${key}${GUID}`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const query = Object.fromEntries(new URL(req.url ?? '/', 'http://x').searchParams);
    const conn: AcsConnection = { at: Date.now(), query, remotePort: socket.remotePort ?? 0, received: [] };
    this.connections.push(conn);
    this.sockets.add(socket);
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const frame = readFrame(buf);
        if (!frame) break;
        buf = buf.subarray(frame.length);
        if (frame.opcode === 0x8) socket.end(encodeFrame(0x8, Buffer.alloc(0)));
        else if (frame.opcode === 0x9) socket.write(encodeFrame(0xa, frame.payload));
        else if (frame.opcode === 0x1) {
          try {
            conn.received.push(String((JSON.parse(frame.payload.toString('utf8')) as { type?: string }).type));
          } catch {
            conn.received.push('(not JSON)');
          }
        }
      }
    });
    const closed = () => {
      conn.closedAt ??= Date.now();
      this.sockets.delete(socket);
    };
    socket.on('close', closed);
    socket.on('error', closed);
    this.send(socket, heartbeat());
  }

  private heartbeat(): void {
    for (const s of this.sockets) this.send(s, heartbeat());
  }

  private send(socket: Socket, message: unknown): void {
    if (!socket.destroyed) socket.write(encodeFrame(0x1, Buffer.from(JSON.stringify(message))));
  }
}

let seq = 0;
function heartbeat() {
  return { type: 'HeartbeatMessage', message: { healthy: true, messageId: `hb-${++seq}` } };
}

/** One frame from the client (masked), or undefined until it is whole. */
function readFrame(b: Buffer): { opcode: number; payload: Buffer; length: number } | undefined {
  if (b.length < 2) return undefined;
  const opcode = b[0]! & 0x0f;
  const masked = (b[1]! & 0x80) !== 0;
  let len = b[1]! & 0x7f;
  let off = 2;
  if (len === 126) {
    if (b.length < 4) return undefined;
    len = b.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (b.length < 10) return undefined;
    len = Number(b.readBigUInt64BE(2));
    off = 10;
  }
  const maskAt = off;
  if (masked) off += 4;
  if (b.length < off + len) return undefined;
  const payload = Buffer.from(b.subarray(off, off + len));
  if (masked) for (let i = 0; i < len; i++) payload[i]! ^= b[maskAt + (i % 4)]!;
  return { opcode, payload, length: off + len };
}

/** A server frame: unmasked, final. */
function encodeFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head =
    n < 126
      ? Buffer.from([0x80 | opcode, n])
      : n < 65_536
        ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff])
        : Buffer.concat([
            Buffer.from([0x80 | opcode, 127]),
            (() => {
              const l = Buffer.alloc(8);
              l.writeBigUInt64BE(BigInt(n));
              return l;
            })(),
          ]);
  return Buffer.concat([head, payload]);
}
