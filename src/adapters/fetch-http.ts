import { HttpError } from '../errors.js';
import type { HttpPort } from '../ports.js';

/** HTTP GET with Node's fetch, a timeout and a size cap; failures are classified for the caller. */
export class FetchHttp implements HttpPort {
  async get(url: string, opts: { timeoutMs: number; maxBytes: number }): Promise<Uint8Array> {
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs), redirect: 'follow' });
    } catch (err) {
      throw httpFailure(`GET ${url}`, err, opts.timeoutMs);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new HttpError('status', `GET ${url} answered ${res.status} ${res.statusText}`, res.status);
    }
    const length = Number(res.headers.get('content-length') ?? 0);
    if (length > opts.maxBytes) throw new HttpError('too-large', `GET ${url} is ${length} bytes, more than ${opts.maxBytes}`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        total += chunk.length;
        if (total > opts.maxBytes) throw new HttpError('too-large', `GET ${url} is more than ${opts.maxBytes} bytes`);
        chunks.push(chunk);
      }
    } catch (err) {
      throw err instanceof HttpError ? err : httpFailure(`GET ${url}`, err, opts.timeoutMs);
    }
    return Buffer.concat(chunks);
  }
}

/** Classify a fetch failure by its error name and the system error code of its cause. */
export function httpFailure(what: string, err: unknown, timeoutMs: number): HttpError {
  const name = (err as { name?: string } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError')
    return new HttpError('timeout', `${what} timed out after ${timeoutMs} ms`, undefined, { cause: err });
  // fetch puts the system error in its cause; node:http's error is the system error.
  const e = err as { code?: unknown; cause?: { code?: string } } | null;
  const code = typeof e?.code === 'string' ? e.code : e?.cause?.code;
  if (code === 'ECONNREFUSED') return new HttpError('refused', `${what}: connection refused`, undefined, { cause: err });
  return new HttpError('network', `${what} failed (${code ?? (err as Error)?.message ?? String(err)})`, undefined, { cause: err });
}
