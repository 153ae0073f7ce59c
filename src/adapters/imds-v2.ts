/**
 * Instance metadata over IMDSv2 only: a session token from `PUT /latest/api/token`, reused until shortly
 * before it expires, fetched again on a 401. Every call has a timeout.
 *
 * Not @aws-sdk/ec2-metadata-service: it reports a 404 (which means "not yet" for lifecycle state and
 * "none" for spot notices) only through its error message, and callers here must classify without
 * reading message text.
 */
import { EcsGvisorError, HttpError } from '../errors.js';
import type { Clock, ImdsPort } from '../ports.js';
import { httpFailure } from './fetch-http.js';
import { request } from './node-http.js';

export interface ImdsOptions {
  baseUrl: string;
  timeoutMs?: number;
  tokenTtlSeconds?: number;
}

export class ImdsV2 implements ImdsPort {
  private token?: { value: string; expiresAt: number };

  constructor(
    private readonly clock: Clock,
    private readonly opts: ImdsOptions,
  ) {}

  private get base(): string {
    return this.opts.baseUrl.replace(/\/+$/, '');
  }

  async get(path: string): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.sessionToken();
      const res = await this.request('GET', path, { 'X-aws-ec2-metadata-token': token });
      if (res.status === 200) return res.body;
      if (res.status === 404) return undefined;
      if (res.status === 401 && attempt === 0) {
        this.token = undefined; // expired or revoked early: one fresh token, then give up
        continue;
      }
      throw new EcsGvisorError('IMDS_FAILED', `Instance metadata ${this.base}${path} answered HTTP ${res.status}.`, {
        details: { status: res.status },
      });
    }
  }

  private async sessionToken(): Promise<string> {
    const now = this.clock.now();
    if (this.token && now < this.token.expiresAt) return this.token.value;
    const ttl = this.opts.tokenTtlSeconds ?? 21_600;
    const res = await this.request('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': String(ttl) });
    if (res.status !== 200 || !res.body) {
      throw new EcsGvisorError(
        'IMDS_FAILED',
        `Instance metadata ${this.base} refused a session token (HTTP ${res.status}); IMDSv2 is required.`,
        {
          details: { status: res.status },
        },
      );
    }
    const value = res.body.trim();
    // A token is one header value: printable, no spaces. Anything else (an HTML page) is not one.
    if (!/^[\x21-\x7e]{1,512}$/.test(value)) {
      throw new EcsGvisorError(
        'IMDS_FAILED',
        `Instance metadata ${this.base} answered ${JSON.stringify(value.slice(0, 40))}${value.length > 40 ? '…' : ''} for a session token, which is not one.`,
      );
    }
    // Renew well before expiry so a call never carries a token that lapses in flight.
    this.token = { value, expiresAt: now + Math.max(1, ttl - Math.min(300, ttl / 10)) * 1000 };
    return this.token.value;
  }

  private async request(method: 'GET' | 'PUT', path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    const timeoutMs = this.opts.timeoutMs ?? 2_000;
    try {
      const res = await request(`${this.base}${path}`, { method, headers, timeoutMs, maxBytes: 1 << 20 });
      return { status: res.status, body: res.body.toString('utf8') };
    } catch (err) {
      const failure = err instanceof HttpError ? err : httpFailure(`${method} ${this.base}${path}`, err, timeoutMs);
      throw new EcsGvisorError('IMDS_FAILED', `Instance metadata is unreachable: ${failure.message}.`, {
        cause: failure,
        details: { kind: failure.kind },
      });
    }
  }
}
