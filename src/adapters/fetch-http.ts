import type { HttpPort } from '../ports.js';

/** HTTP GET with Node's fetch, a timeout and a size cap. */
export class FetchHttp implements HttpPort {
  async get(url: string, opts: { timeoutMs: number; maxBytes: number }): Promise<Uint8Array> {
    const res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs), redirect: 'follow' });
    if (!res.ok) throw new Error(`GET ${url} answered ${res.status} ${res.statusText}`);
    const length = Number(res.headers.get('content-length') ?? 0);
    if (length > opts.maxBytes) throw new Error(`GET ${url} is ${length} bytes, more than ${opts.maxBytes}`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > opts.maxBytes) throw new Error(`GET ${url} is more than ${opts.maxBytes} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }
}
