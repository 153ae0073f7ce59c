/** What every monitor shares: the watch's state, the scheduler, and the two actions several take. */
import type { AttributePublisher } from '../attribute-publisher.js';
import type { Healer } from '../healer.js';
import type { Scheduler } from '../scheduler.js';
import type { WatchState } from '../watch-state.js';

export interface WatchContext {
  state: WatchState;
  sched: Scheduler;
  attributes: AttributePublisher;
  healer: Healer;
}

/** Minutes, for deadlines. */
export const MINUTES = 60_000;
