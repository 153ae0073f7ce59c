/**
 * HTTP requests through node:http (node:https for an https URL), for the instance's own endpoints:
 * instance metadata and the agent's introspection API. Not fetch: its implementation (undici) is the
 * largest thing a watching `run` would load otherwise, in memory and in time on first use. Redirects are
 * never followed: neither endpoint sends one, and whatever listens on a local port must not be able to
 * send a request elsewhere. Every request has one deadline, body included, and a size cap.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { HttpError } from '../errors.js';
import type { HttpPort } from '../ports.js';
import { httpFailure } from './fetch-http.js';

export interface HttpReply {
  status: number;
  statusText: string;
  body: Buffer;
}

export interface HttpRequestOptions {
  method?: 'GET' | 'PUT';
  headers?: Record<string, string>;
  timeoutMs: number;
  maxBytes: number;
}

/** One request; throws HttpError when it cannot be made, times out, or its body is over maxBytes. */
export function request(url: string, o: HttpRequestOptions): Promise<HttpReply> {
  const what = `${o.method ?? 'GET'} ${url}`;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown, reply?: HttpReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (reply) resolve(reply);
      else {
        req.destroy();
        reject(err instanceof HttpError ? err : httpFailure(what, err, o.timeoutMs));
      }
    };
    const target = new URL(url);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(target, { method: o.method ?? 'GET', headers: o.headers ?? {} }, (res: IncomingMessage) => {
      const length = Number(res.headers['content-length'] ?? 0);
      if (length > o.maxBytes) return settle(new HttpError('too-large', `${what} is ${length} bytes, more than ${o.maxBytes}`));
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > o.maxBytes) settle(new HttpError('too-large', `${what} is more than ${o.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('error', (err) => settle(err));
      res.on('aborted', () => settle(new Error('the connection closed before the reply was complete')));
      res.on('end', () =>
        settle(undefined, { status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', body: Buffer.concat(chunks) }),
      );
    });
    const timer = setTimeout(
      () => settle(Object.assign(new Error(`timed out after ${o.timeoutMs} ms`), { name: 'TimeoutError' })),
      o.timeoutMs,
    );
    req.on('error', (err) => settle(err));
    req.end();
  });
}

/** HttpPort over request(): a status outside 2xx (a redirect included) is an HttpError of kind status. */
export class NodeHttp implements HttpPort {
  async get(url: string, opts: { timeoutMs: number; maxBytes: number }): Promise<Uint8Array> {
    const r = await request(url, opts);
    if (r.status < 200 || r.status > 299) throw new HttpError('status', `GET ${url} answered ${r.status} ${r.statusText}`, r.status);
    return r.body;
  }
}
