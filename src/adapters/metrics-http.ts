/** Serves /metrics on 127.0.0.1 only: the figures describe the host and are no one else's business. */
import { createServer, type Server } from 'node:http';

/** What is served: the exposition text as of the request, and its content type. */
export type RenderMetrics = () => Promise<{ text: string; contentType: string }>;

export async function startMetricsServer(
  render: RenderMetrics,
  port: number,
  host = '127.0.0.1',
): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    render().then(
      ({ text, contentType }) => res.writeHead(200, { 'content-type': contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
