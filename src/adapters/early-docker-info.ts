/**
 * Docker's `GET /info`, asked before the program is loaded. dockerd takes 20–40 ms to answer it (it runs
 * the default runtime's binary for its version each time), and `status` cannot report without it: asked
 * from the entry, that wait overlaps the loading of the program instead of following it. Only
 * node:http, loaded when asked (the entry loads this module for --version too). The answer is taken once,
 * by a DockerodeDocker for the same host (the validated configuration's), which applies its own deadline
 * and error handling to it, and which asks /info the same way later (getDockerInfo: its answer capped).
 */

import type { RequestOptions } from 'node:http';

export interface EarlyDockerInfo {
  /** The DOCKER_HOST it was asked of (unix:///path). */
  readonly host: string;
  /** The answer (parsed JSON; rejected like docker-modem on a failure), the first time; then undefined. */
  take(): Promise<unknown> | undefined;
}

/** The most of an /info answer that is read. */
export const MAX_INFO_BYTES = 1024 * 1024;

/** /info asked now, for `status`, to be taken once by DockerodeDocker; undefined for a host that is no unix socket. */
export function askDockerInfo(host: string): EarlyDockerInfo | undefined {
  let answer = getDockerInfo(host);
  if (!answer) return undefined;
  // Reported by the taker, if it is taken.
  answer.catch(() => undefined);
  return {
    host,
    take() {
      const a = answer;
      answer = undefined;
      return a;
    },
  };
}

/**
 * GET /info of a unix:// host (parsed JSON; rejected like docker-modem on a failure), its answer read no
 * further than MAX_INFO_BYTES; undefined for another kind of host.
 */
export function getDockerInfo(host: string, signal?: AbortSignal): Promise<unknown> | undefined {
  // Only a socket path (as the configuration accepts): an empty one would have Node ask localhost:80.
  const socketPath = /^unix:\/\/(\/.+)$/.exec(host)?.[1];
  if (socketPath === undefined) return undefined;
  const { get } = process.getBuiltinModule('node:http') as typeof import('node:http');
  return new Promise((resolve, reject) => {
    // No server name, as DockerodeDocker's agent: deriving one from the host costs a cold process 10 ms.
    const req = get({ socketPath, path: '/info', agent: false, servername: '' } as RequestOptions, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        chunks.push(c);
        // dockerd's answer is a few KB: anything near this is not Docker, and is not kept in memory.
        if (bytes > MAX_INFO_BYTES) {
          chunks.length = 0;
          req.destroy(new Error(`the answer to GET /info is larger than ${MAX_INFO_BYTES / 1024 / 1024} MiB`));
        }
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300 && json !== undefined) return resolve(json);
        // The shape DockerodeDocker classifies: the HTTP status, and Docker's own message in json.
        const message = (json as { message?: unknown } | undefined)?.message;
        reject(
          Object.assign(new Error(`(HTTP code ${status}) ${typeof message === 'string' ? message : text.slice(0, 200)}`), {
            statusCode: status >= 200 && status < 300 ? undefined : status,
            json,
          }),
        );
      });
    });
    // A status that never takes the answer (another DOCKER_HOST in the file) or a dockerd that never
    // answers must not keep the process alive: the taker's deadline timer does that while it waits.
    req.on('socket', (s) => s.unref());
    req.on('error', reject);
    signal?.addEventListener('abort', () => req.destroy(new Error('aborted')), { once: true });
  });
}
