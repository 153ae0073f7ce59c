import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { askDockerInfo } from '../../src/adapters/early-docker-info.js';

describe('the early /info', () => {
  it('is asked only of a socket path, as the configuration accepts: never of TCP, never of an empty path (Node would ask localhost:80)', () => {
    for (const host of ['unix://', 'unix://relative.sock', 'tcp://127.0.0.1:2375', 'http://127.0.0.1:2375', ''])
      expect({ host, asked: askDockerInfo(host) }).toEqual({ host, asked: undefined });
  });

  it('hands its answer over once', async () => {
    const dir = mkdtempSync('/tmp/egv-early-');
    const server = createServer((_req, res) => res.end('{"DefaultRuntime":"runsc"}'));
    await new Promise<void>((r) => server.listen(`${dir}/docker.sock`, r));
    try {
      const early = askDockerInfo(`unix://${dir}/docker.sock`)!;
      expect(early.host).toBe(`unix://${dir}/docker.sock`);
      await expect(early.take()).resolves.toEqual({ DefaultRuntime: 'runsc' });
      expect(early.take()).toBeUndefined();
    } finally {
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
