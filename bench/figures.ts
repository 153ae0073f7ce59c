/** What every bench script shares: its figures as one machine-readable line each, and small statistics. */

export interface Figure {
  metric: string;
  value: number | string;
  unit: string;
  target: string;
  ok: boolean;
}

/** Print the figures; `bench/run.mjs` collects these lines into the markdown table. */
export function report(bench: string, figures: Figure[]): void {
  for (const f of figures) {
    const value = typeof f.value === 'number' ? round(f.value) : f.value;
    console.log(`BENCH ${JSON.stringify({ bench, ...f, value })}`);
  }
}

function round(v: number): number {
  return Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100;
}

/** The p-th percentile (nearest rank) of `xs`; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** A small seeded PRNG (mulberry32): the simulations are the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
