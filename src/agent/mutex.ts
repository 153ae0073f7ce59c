/** Runs async sections one at a time, in call order: every change to the agent container goes through one. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private since: number | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /** How long the section now running has been running; 0 when none is. */
  busyMs(): number {
    return this.since === undefined ? 0 : this.now() - this.since;
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    const section = async (): Promise<T> => {
      this.since = this.now();
      try {
        return await fn();
      } finally {
        this.since = undefined;
      }
    };
    const result = this.tail.then(section, section);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
