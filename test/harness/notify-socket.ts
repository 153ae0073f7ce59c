/**
 * A local AF_UNIX datagram socket standing in for systemd's notify socket. Node cannot bind one, so a
 * small python3 receiver does, printing each datagram with the sender's PID (SCM_CREDENTIALS) as JSON.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

const RECEIVER = `
import json, os, socket, struct, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"ready": True}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, 1024)
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for fd in struct.unpack("i" * (len(data) // 4), data[: len(data) - len(data) % 4]):
                os.close(fd)
    print(json.dumps({"pid": pid, "fields": msg.decode()}), flush=True)
`;

export interface NotifyMessage {
  pid: number | null;
  fields: Record<string, string>;
}

export class NotifySocket {
  readonly messages: NotifyMessage[] = [];
  private child?: ChildProcess;

  constructor(readonly path: string) {}

  async start(): Promise<this> {
    this.child = spawn('python3', ['-c', RECEIVER, this.path], { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    this.child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = JSON.parse(buf.slice(0, i)) as { ready?: boolean; pid?: number | null; fields?: string };
        buf = buf.slice(i + 1);
        if (line.fields !== undefined) {
          const fields = Object.fromEntries(
            line.fields
              .split('\n')
              .filter(Boolean)
              .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
          );
          this.messages.push({ pid: line.pid ?? null, fields });
        }
      }
    });
    for (let i = 0; i < 100 && !existsSync(this.path); i++) await delay(50);
    if (!existsSync(this.path)) throw new Error('python3 notify receiver did not start (apt-get install python3)');
    return this;
  }

  with(key: string): NotifyMessage[] {
    return this.messages.filter((m) => key in m.fields);
  }

  stop(): void {
    this.child?.kill('SIGKILL');
  }
}
