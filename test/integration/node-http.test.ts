import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeHttp, request } from '../../src/adapters/node-http.js';
import { HttpError } from '../../src/errors.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A server on loopback; `requests` counts what reached it. */
async function serve(answer: (res: ServerResponse, path: string) => void): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const s = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    answer(res, req.url ?? '');
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, requests };
}

const kindOf = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HttpError);
  return (err as HttpError).kind;
};

describe('node-http: the instance endpoints without fetch', () => {
  it('answers the body, and the headers it was given reach the server', async () => {
    let seen: string | undefined;
    const s = createServer((req, res) => {
      seen = req.headers['x-aws-ec2-metadata-token'] as string;
      req.resume();
      res.end(`${req.method} ok`);
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/x`;
    const r = await request(url, { method: 'PUT', headers: { 'X-aws-ec2-metadata-token': 't1' }, timeoutMs: 5_000, maxBytes: 100 });
    expect([r.status, r.body.toString()]).toEqual([200, 'PUT ok']);
    expect(seen).toBe('t1');
    expect(Buffer.from(await new NodeHttp().get(url, { timeoutMs: 5_000, maxBytes: 100 })).toString()).toBe('GET ok');
  });

  it('never follows a redirect: the status is the answer, and the other server gets nothing', async () => {
    const elsewhere = await serve((res) => res.end('followed'));
    const local = await serve((res) => {
      res.writeHead(302, { location: `${elsewhere.url}/v1/metadata` });
      res.end();
    });
    const err = await new NodeHttp().get(`${local.url}/v1/metadata`, { timeoutMs: 5_000, maxBytes: 100 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'status', status: 302 });
    expect(elsewhere.requests).toEqual([]);
  });

  it('classifies a refused connection, a silent server, a body that never ends, and one too large', async () => {
    const closed = await serve(() => {});
    const port = new URL(closed.url).port;
    const s = servers.pop()!;
    await new Promise((r) => s.close(r));
    expect(await kindOf(request(`http://127.0.0.1:${port}/`, { timeoutMs: 5_000, maxBytes: 100 }))).toBe('refused');

    const silent = await serve(() => {});
    const t = Date.now();
    expect(await kindOf(request(silent.url, { timeoutMs: 300, maxBytes: 100 }))).toBe('timeout');
    expect(Date.now() - t).toBeLessThan(10_000);

    const endless = await serve((res) => {
      res.writeHead(200);
      res.write('partial');
    });
    expect(await kindOf(request(endless.url, { timeoutMs: 300, maxBytes: 100 }))).toBe('timeout');

    const declared = await serve((res) => res.end('x'.repeat(200)));
    expect(await kindOf(request(declared.url, { timeoutMs: 5_000, maxBytes: 100 }))).toBe('too-large');
    const chunked = await serve((res) => {
      res.writeHead(200); // no content-length: chunked
      for (let i = 0; i < 10; i++) res.write('x'.repeat(50));
      res.end();
    });
    expect(await kindOf(request(chunked.url, { timeoutMs: 5_000, maxBytes: 100 }))).toBe('too-large');
  });
});
