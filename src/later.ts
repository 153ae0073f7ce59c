/**
 * Work left for later: started by the first ask, with that ask's argument, and the same promise for every
 * ask after it. What a step leaves unfinished (probes to remove, network modes to prove) is one of these.
 */
export class Later<A, T> {
  private started?: Promise<T>;

  constructor(private readonly start: (arg: A) => Promise<T>) {}

  /** Nothing left: every ask resolves to `value`. */
  static done<T>(value: T): Later<unknown, T> {
    return new Later(async () => value);
  }

  get(arg: A): Promise<T> {
    this.started ??= this.start(arg);
    return this.started;
  }
}
