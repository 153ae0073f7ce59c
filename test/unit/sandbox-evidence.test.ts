import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isProbeArch, type ProbeArch, probeElf, probeRootfs, tar } from '../../src/runtime/probe-image.js';
import { parseRunscVersion } from '../../src/runtime/runsc.js';
import { artifactKind, parseSha512File } from '../../src/runtime/runsc-install.js';
import {
  cgroupPlacementProblem,
  chargeProblem,
  isSandboxCmdline,
  memoryChargeFile,
  memoryLimitFile,
} from '../../src/runtime/sandbox-proof.js';

describe('sandbox evidence', () => {
  it('recognises gVisor sandbox processes, old and new', () => {
    expect(isSandboxCmdline(['runsc-sandbox', '--root=/var/run/docker/runtime-runc/moby', 'boot'])).toBe(true);
    expect(isSandboxCmdline(['/usr/local/bin/gvisor-bin/gvisor_sentry', 'boot'])).toBe(true);
    expect(isSandboxCmdline(['/bin/sleep', '3600'])).toBe(false);
    expect(isSandboxCmdline(['runsc-gofer', '--root=/x'])).toBe(false);
    // A container's own arguments are its to choose: only argv[0] counts.
    expect(isSandboxCmdline(['/bin/sleep', '3600', 'runsc-sandbox'])).toBe(false);
    expect(isSandboxCmdline(['/bin/sleep', '--name=gvisor_sentry'])).toBe(false);
  });

  it('finds the memory limit file for cgroup v1, hybrid and v2', () => {
    const v1 = '9:name=systemd:/docker/abc\n4:memory:/docker/abc\n0::/\n';
    expect(memoryLimitFile(v1, '/sys/fs/cgroup')).toBe('/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes');
    expect(memoryLimitFile('0::/system.slice/docker-abc.scope\n', '/sys/fs/cgroup')).toBe(
      '/sys/fs/cgroup/system.slice/docker-abc.scope/memory.max',
    );
    expect(memoryLimitFile('5:cpu,cpuacct:/x\n', '/sys/fs/cgroup')).toBeUndefined();
  });

  it('sees the limit acting: the cgroup is charged for the sandbox’s memory, at least its footprint and at most the limit', () => {
    expect(memoryChargeFile('/sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes')).toBe(
      '/sys/fs/cgroup/memory/docker/x/memory.usage_in_bytes',
    );
    expect(memoryChargeFile('/sys/fs/cgroup/system.slice/docker-x.scope/memory.max')).toBe(
      '/sys/fs/cgroup/system.slice/docker-x.scope/memory.current',
    );
    const limit = 64 << 20;
    expect(chargeProblem('31457280\n', limit, 'f')).toBeUndefined();
    expect(chargeProblem('4096\n', limit, 'f')).toMatch(/only 4096 bytes: its memory is counted elsewhere/);
    expect(chargeProblem(String(limit + 1), limit, 'f')).toMatch(/over the 67108864-byte limit/);
    expect(chargeProblem(undefined, limit, 'f')).toMatch(/cannot be read/);
    expect(chargeProblem('max', limit, 'f')).toMatch(/cannot be read/);
  });

  it('wants the sandbox in the cgroup Docker made for its container, under either driver', () => {
    const id = 'f'.repeat(64);
    expect(cgroupPlacementProblem(`4:memory:/docker/${id}\n`, id)).toBeUndefined();
    expect(cgroupPlacementProblem(`4:memory:/ecs/task1/${id}\n`, id)).toBeUndefined();
    expect(cgroupPlacementProblem(`0::/ecstasks.slice/ecstasks-t1.slice/docker-${id}.scope\n`, id)).toBeUndefined();
    // Measured with runsc on cgroup v1 under Docker's systemd driver: the path taken as a directory name.
    const literal = `/system.slice/containerd.service/system.slice:docker:${id}`;
    expect(cgroupPlacementProblem(`4:memory:${literal}\n`, id)).toMatch(
      new RegExp(`in cgroup ${literal}, not the one Docker made for its container`),
    );
    expect(cgroupPlacementProblem(`4:memory:/docker/${'e'.repeat(64)}\n`, id)).toMatch(/not the one Docker made/);
  });

  it('parses runsc --version', () => {
    expect(parseRunscVersion('runsc version release-20240807.0\nspec: 1.1.0-rc.1\n')).toEqual({
      version: 'release-20240807.0',
      spec: '1.1.0-rc.1',
    });
    expect(parseRunscVersion('runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n')?.version).toBe('0.0~20221219.0');
    expect(parseRunscVersion('Usage: runsc')).toBeUndefined();
  });
});

describe('runsc release artifacts', () => {
  const hex = 'ab'.repeat(64);
  it('reads .sha512 files', () => {
    expect(parseSha512File(`${hex}  runsc\n`, 'runsc')).toBe(hex);
    expect(parseSha512File(`${hex.toUpperCase()} *gvisor.tar.bz2`, 'gvisor.tar.bz2')).toBe(hex);
    expect(parseSha512File(hex, 'runsc')).toBe(hex);
    expect(parseSha512File(`${hex}  containerd-shim-runsc-v1\n`, 'runsc')).toBeUndefined();
    expect(parseSha512File('not a checksum', 'runsc')).toBeUndefined();
  });
  it('tells a binary from a tarball', () => {
    expect(artifactKind(probeElf('x64'))).toBe('binary');
    expect(artifactKind(tar([{ name: 'runsc', mode: 0o755, data: Buffer.from('x') }]))).toBe('tarball');
    expect(artifactKind(Buffer.from('BZh91AY&SY'))).toBe('tarball');
    expect(artifactKind(Buffer.from([0x1f, 0x8b, 8, 0]))).toBe('tarball');
    expect(artifactKind(Buffer.from('<html>404</html>'))).toBeUndefined();
  });
});

describe('built-in probe image', () => {
  it('is a tiny static ELF for each architecture', () => {
    for (const arch of ['x64', 'arm64'] as const) {
      const elf = probeElf(arch);
      expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      expect(elf.readUInt16LE(18)).toBe(arch === 'x64' ? 0x3e : 0xb7);
      expect(elf.length).toBeLessThan(160);
    }
  });

  it(`runs natively on this ${process.arch} host and stays blocked until killed`, async () => {
    expect(isProbeArch(process.arch)).toBe(true);
    const path = `${mkdtempSync('/tmp/egv-elf-')}/sleep`;
    writeFileSync(path, probeElf(process.arch as ProbeArch), { mode: 0o755 });
    const child = spawn(path, ['3600'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull();
    child.kill('SIGKILL');
    const signal = await new Promise((r) => child.on('exit', (_c, s) => r(s)));
    expect(signal).toBe('SIGKILL');
  });

  it('the other architecture’s runs under qemu-user-static and stays blocked until killed', async () => {
    const other =
      process.arch === 'x64'
        ? { arch: 'arm64' as const, qemu: 'qemu-aarch64-static' }
        : { arch: 'x64' as const, qemu: 'qemu-x86_64-static' };
    const path = `${mkdtempSync('/tmp/egv-elf-')}/sleep`;
    writeFileSync(path, probeElf(other.arch), { mode: 0o755 });
    const child = spawn(other.qemu, [path, '3600'], { stdio: 'ignore' });
    const exited = new Promise<string | null>((r) => child.on('exit', (code, s) => r(s ?? `exit ${code}`)));
    // Blocked in its one syscall: the emulator's thread sleeps (state S), and is still there after.
    const state = () => {
      try {
        return readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.[0];
      } catch {
        return undefined;
      }
    };
    for (let i = 0; i < 200 && state() !== 'S'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(state()).toBe('S');
    await new Promise((r) => setTimeout(r, 500));
    expect(child.exitCode).toBeNull();
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
  });

  it('packs /bin/sleep into a valid ustar archive', () => {
    const t = probeRootfs('x64');
    expect(t.length % 512).toBe(0);
    expect(t.subarray(257, 262).toString('latin1')).toBe('ustar');
    expect(t.subarray(512, 512 + 100).toString('latin1')).toMatch(/^bin\/sleep\0/);
  });
});
