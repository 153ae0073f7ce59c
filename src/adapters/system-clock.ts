import { setTimeout as delay } from 'node:timers/promises';
import type { Clock } from '../ports.js';

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return delay(ms, undefined, { signal }).catch(() => undefined);
  }
}
