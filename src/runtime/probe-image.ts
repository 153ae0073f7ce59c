/**
 * The built-in probe image: a root filesystem holding one static ELF, /bin/sleep, that blocks in a
 * syscall until killed. It lets ecs-gvisor prove the sandbox on any host with no registry, no
 * package and no pre-loaded image. It ignores its arguments, so a probe can also use an operator's
 * image whose /bin/sleep is a real sleep.
 */

export const PROBE_CMD: readonly string[] = ['/bin/sleep', '3600'];

const BASE = 0x400000n;
const CODE_OFFSET = 64 + 56; // ELF header + one program header

/** Machine code: a loop around one blocking syscall. */
const CODE: Record<'x64' | 'arm64', number[]> = {
  // 0: mov eax, 34 (pause) ; syscall ; jmp 0
  x64: [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7],
  // 0: mov x0..x3, #0 ; mov x8, #73 (ppoll with no fds and no timeout) ; svc #0 ; b 0
  arm64: [0xd2800000, 0xd2800001, 0xd2800002, 0xd2800003, 0xd2800928, 0xd4000001, 0x17fffffa].flatMap((w) => [
    w & 0xff,
    (w >>> 8) & 0xff,
    (w >>> 16) & 0xff,
    (w >>> 24) & 0xff,
  ]),
};
const MACHINE = { x64: 0x3e, arm64: 0xb7 } as const;

export type ProbeArch = keyof typeof CODE;

export function isProbeArch(arch: string): arch is ProbeArch {
  return arch === 'x64' || arch === 'arm64';
}

/** A minimal static ELF64 executable for `arch`. */
export function probeElf(arch: ProbeArch): Buffer {
  const code = Buffer.from(CODE[arch]);
  const size = BigInt(CODE_OFFSET + code.length);
  const elf = Buffer.alloc(CODE_OFFSET + code.length);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0); // magic, 64-bit, little-endian, version 1, SysV
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(MACHINE[arch], 18);
  elf.writeUInt32LE(1, 20); // EV_CURRENT
  elf.writeBigUInt64LE(BASE + BigInt(CODE_OFFSET), 24); // entry
  elf.writeBigUInt64LE(64n, 32); // program headers right after this header
  elf.writeUInt16LE(64, 52); // header size
  elf.writeUInt16LE(56, 54); // program header size
  elf.writeUInt16LE(1, 56); // one program header
  // PT_LOAD, R+X, the whole file at BASE.
  elf.writeUInt32LE(1, 64);
  elf.writeUInt32LE(5, 68);
  elf.writeBigUInt64LE(0n, 72);
  elf.writeBigUInt64LE(BASE, 80);
  elf.writeBigUInt64LE(BASE, 88);
  elf.writeBigUInt64LE(size, 96);
  elf.writeBigUInt64LE(size, 104);
  elf.writeBigUInt64LE(0x1000n, 112);
  code.copy(elf, CODE_OFFSET);
  return elf;
}

export interface TarEntry {
  name: string;
  mode: number;
  /** Omitted for a directory. */
  data?: Uint8Array;
}

/** A ustar archive (enough for `docker import`). */
export function tar(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const isDir = e.data === undefined;
    const h = Buffer.alloc(512);
    h.write(isDir && !e.name.endsWith('/') ? `${e.name}/` : e.name, 0, 100, 'utf8');
    h.write(octal(e.mode, 7), 100);
    h.write(octal(0, 7), 108);
    h.write(octal(0, 7), 116);
    h.write(octal(e.data?.length ?? 0, 11), 124);
    h.write(octal(0, 11), 136);
    h.write('        ', 148); // checksum placeholder: eight spaces
    h.write(isDir ? '5' : '0', 156);
    h.write('ustar\u000000', 257, 'latin1');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${octal(sum, 6)}\u0000 `, 148, 'latin1');
    blocks.push(h);
    if (e.data) {
      blocks.push(Buffer.from(e.data));
      const pad = (512 - (e.data.length % 512)) % 512;
      if (pad) blocks.push(Buffer.alloc(pad));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width, '0');
}

export function probeRootfs(arch: ProbeArch): Buffer {
  return tar([
    { name: 'bin', mode: 0o755 },
    { name: 'bin/sleep', mode: 0o755, data: probeElf(arch) },
  ]);
}
