/**
 * Seeded random numbers (seedrandom's Alea generator), so every stochastic step in cellfm
 * (masking, sampling, UMAP, splits) is reproducible from a seed and its state can be saved.
 */
import { createRequire } from "node:module";
import type seedrandom from "seedrandom";

// seedrandom's Alea alone (`seedrandom/lib/alea`, the same function as `seedrandom.alea`), loaded on
// first use: commands that draw no random numbers (e.g. `cellfm tokenize`) do not load it
const requireCjs = createRequire(import.meta.url);
let alea: typeof seedrandom.alea | undefined;

/** A seeded generator of uniform floats in [0, 1) whose state can be saved and restored. */
export interface Rng {
  /** Next uniform float in [0, 1). */
  (): number;
  /** Serializable generator state (for exact resume). */
  state(): object;
}

/** Create a generator from a seed, or restore one from a saved {@link Rng.state}. */
export function makeRng(seed: number | string, state?: object): Rng {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  alea ??= requireCjs("seedrandom/lib/alea") as typeof seedrandom.alea;
  const r = alea(String(seed), { state: (state ?? true) as any });
  return r as unknown as Rng;
}

/** Uniform integer in [0, n). */
export function randInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

/** Fisher–Yates shuffle in place; returns the array. */
export function shuffle<T>(rng: Rng, a: T[] | Int32Array): typeof a {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}
