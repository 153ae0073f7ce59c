/** Minutes, for deadlines. */
export const MINUTES = 60_000;
