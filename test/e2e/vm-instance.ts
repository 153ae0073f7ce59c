/**
 * One simulated ECS instance as a virtual machine on a cgroup v2 kernel (vm-image.ts): qemu under software
 * emulation (`-accel tcg`, this machine has no KVM), no network device at all (loopback only), the root
 * disk an overlay of the cached image, /opt/e2e a disk of its own made from the same payload as the
 * container instance's. Commands go in and their output comes back on the second serial port; the first
 * is the console, kept in a file for diagnosis. Its first boot runs the userdata, as cloud-init would.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { E2eWorld } from './global-setup.js';
import { type ExecResult, InstanceBase, type InstanceOptions, preparePayload } from './instance.js';
import { payloadDisk, type VmImage } from './vm-image.js';

/** Everything is slower under emulation: a command's own deadline. */
const EXEC_TIMEOUT_MS = 300_000;

export class VmInstance extends InstanceBase {
  private readonly pending = new Map<number, { resolve: (r: ExecResult) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  private buffered = '';
  private ready?: () => void;
  private socket?: Socket;
  private exited = false;

  private constructor(
    readonly name: string,
    readonly dir: string,
    private readonly qemu: ChildProcess,
  ) {
    super();
    qemu.once('exit', () => {
      this.exited = true;
      for (const [id, p] of this.pending) p.resolve({ code: -1, stdout: '', stderr: `the machine stopped (command ${id})` });
      this.pending.clear();
    });
  }

  /** Boot a fresh machine from `image` and wait for systemd to finish booting (the userdata runs then). */
  static async launch(world: E2eWorld, image: VmImage, name: string, o: InstanceOptions = {}): Promise<VmInstance> {
    const dir = preparePayload(world, name, o);
    copyFileSync(process.execPath, `${dir}/node`); // the fakes' Node, off PATH (/opt/e2e-node/node)
    payloadDisk(dir, `${dir}.payload.raw`);
    const sock = `${dir}.exec.sock`;
    const qemu = spawn(
      'qemu-system-x86_64',
      [
        ...['-accel', 'tcg', '-cpu', 'max', '-m', '3G', '-smp', '2'],
        ...['-nodefaults', '-display', 'none', '-no-user-config', '-nic', 'none'],
        ...['-kernel', image.kernel, '-append', image.append],
        ...['-drive', `file=${image.disk},if=none,id=root,format=raw,snapshot=on`, '-device', 'nvme,drive=root,serial=root'],
        ...['-drive', `file=${dir}.payload.raw,if=virtio,format=raw,readonly=on`],
        ...['-serial', `file:${dir}.console.log`],
        // The machine starts once the test has connected to its command channel (wait=on).
        ...['-chardev', `socket,id=exec,path=${sock},server=on,wait=on`, '-serial', 'chardev:exec'],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    qemu.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const vm = new VmInstance(`egv-v2-${name}`, dir, qemu);
    try {
      await vm.connect(sock, () => stderr);
      await vm.booted(600_000);
    } catch (err) {
      await vm.destroy();
      throw err;
    }
    return vm;
  }

  private async connect(sock: string, stderr: () => string): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (!existsSync(sock)) {
      if (this.exited || Date.now() > deadline) throw new Error(`qemu did not start: ${stderr()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ready = new Promise<void>((resolve) => (this.ready = resolve));
    this.socket = connect(sock);
    this.socket.on('data', (b: Buffer) => this.receive(b.toString('latin1')));
    this.socket.on('error', () => undefined);
    // Boot to the command channel: the kernel and systemd's first units, under emulation.
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no command channel after 300 s\n${this.console(40)}`)), 300_000).unref(),
    );
    await Promise.race([ready, timeout]);
  }

  private receive(text: string): void {
    this.buffered += text;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).replace(/\r$/, '');
      this.buffered = this.buffered.slice(nl + 1);
      if (line === 'E2E-EXEC-READY') {
        this.ready?.();
        continue;
      }
      const [id, code, out, err] = line.split(' ');
      const p = this.pending.get(Number(id));
      if (!p) continue;
      clearTimeout(p.timer);
      this.pending.delete(Number(id));
      const text = (b64?: string) => Buffer.from(b64 ?? '', 'base64').toString('utf8');
      p.resolve({ code: Number(code), stdout: text(out), stderr: text(err) });
    }
  }

  async exec(argv: string[], timeoutMs = EXEC_TIMEOUT_MS): Promise<ExecResult> {
    if (this.exited || !this.socket) return { code: -1, stdout: '', stderr: 'the machine is not running' };
    const id = this.nextId++;
    const script = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ code: 124, stdout: '', stderr: `timed out after ${timeoutMs} ms` });
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
      this.socket!.write(`${id} ${Buffer.from(script).toString('base64')}\n`);
    });
  }

  /** The console's last lines (the kernel's and systemd's own words). */
  console(lines: number): string {
    const text = existsSync(`${this.dir}.console.log`) ? readFileSync(`${this.dir}.console.log`, 'latin1') : '';
    return `--- console (last ${lines} lines)\n${text.split('\n').slice(-lines).join('\n')}`;
  }

  override async diagnose(): Promise<string> {
    return `${this.exited ? '' : await super.diagnose()}\n${this.console(40)}`;
  }

  async destroy(): Promise<void> {
    this.socket?.destroy();
    if (!this.exited) {
      const gone = new Promise((r) => this.qemu.once('exit', r));
      this.qemu.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
      if (!this.exited) this.qemu.kill('SIGKILL');
    }
    for (const f of [this.dir, `${this.dir}.payload.raw`, `${this.dir}.console.log`, `${this.dir}.exec.sock`])
      rmSync(f, { recursive: true, force: true });
  }
}
