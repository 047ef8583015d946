/**
 * Count downsampling for the denoising objective (scPRINT, Kalfon et al., Nature Communications 2025):
 * the model sees a noisier profile and is scored against the original counts.
 *
 * Two methods, both seeded from the repo's generator (`src/rng.ts`), noise level p ∈ [0, 1):
 * - `scprint` — cantinilab/scPRINT `scprint/model/utils.py@6bbe1a7` (`downsample_profile`, method
 *   "new", the published v1 line): q = 1.1·p; per gene, r ~ Poisson(q/2 · x) counts are removed, then
 *   the gene is zeroed with probability q/2: x' = max(0, (x − r)·b), b ~ Bernoulli(1 − q/2). For
 *   p = 0.6 about 55 % of the counts disappear and about a third of the expressed genes become 0.
 * - `binomial` — plain binomial thinning, every molecule kept with probability 1 − p:
 *   x' ~ Binomial(x, 1 − p), so E[x'] = (1 − p)·x exactly (the clean alternative).
 *
 * Samplers (float64): Poisson by multiplication for λ < 10 and by Hörmann's PTRS transformed rejection
 * for λ ≥ 10 (as numpy `numpy/random/src/distributions/distributions.c`: `random_poisson_mult`,
 * `random_poisson_ptrs`); binomial by geometric inversion for n·p < 10 and Hörmann's BTRS otherwise
 * (as TensorFlow `tensorflow/core/kernels/random_binomial_op.cc`: `binomial_inversion`, `btrs`).
 */
import type { Rng } from "../rng.js";
import { lgammaF64 } from "../model/likelihoods.js";

/** `training.downsample` methods. */
/** `training.downsample` choices (zod enums and messages are built from this list). */
export const DOWNSAMPLE_METHODS = ["scprint", "binomial"] as const;
export type DownsampleMethod = (typeof DOWNSAMPLE_METHODS)[number];

/** scPRINT's default noise level (`noise: [0.6]` in its `config/base.yml`). */
export const DEFAULT_NOISE = 0.6;

/**
 * One Poisson(λ) draw.
 * @param lambda rate ≥ 0 (finite).
 * @returns a non-negative integer.
 * @throws Error on a negative or non-finite rate.
 */
export function samplePoisson(rng: Rng, lambda: number): number {
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new Error(`Poisson rate must be finite and >= 0, got ${lambda}`);
  if (lambda === 0) return 0;
  if (lambda < 10) {
    // multiplication of uniforms until the product falls below exp(−λ)
    const enlam = Math.exp(-lambda);
    let k = 0;
    let prod = 1;
    for (;;) {
      prod *= rng();
      if (prod > enlam) k++;
      else return k;
    }
  }
  // PTRS (Hörmann 1993, "The transformed rejection method for generating Poisson random variables")
  const slam = Math.sqrt(lambda);
  const loglam = Math.log(lambda);
  const b = 0.931 + 2.53 * slam;
  const a = -0.059 + 0.02483 * b;
  const invalpha = 1.1239 + 1.1328 / (b - 3.4);
  const vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const u = rng() - 0.5;
    const v = rng();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + lambda + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (Math.log(v) + Math.log(invalpha) - Math.log(a / (us * us) + b) <= -lambda + k * loglam - lgammaF64(k + 1)) return k;
  }
}

const STIRLING_TAIL = [
  0.0810614667953272, 0.0413406959554092, 0.0276779256849983, 0.02079067210376509, 0.0166446911898211, 0.0138761288230707,
  0.0118967099458917, 0.010411265261972, 0.00925546218271273, 0.00833056343336287,
];

/** log(k!) − [(k + ½)·log(k + 1) − (k + 1) + ½·log 2π], the tail of Stirling's series (table for k ≤ 9). */
function stirlingTail(k: number): number {
  if (k <= 9) return STIRLING_TAIL[k];
  const kp1sq = (k + 1) * (k + 1);
  return (1 / 12 - (1 / 360 - 1 / 1260 / kp1sq) / kp1sq) / (k + 1);
}

/** BTRS for p ≤ 0.5 and n·p ≥ 10. */
function btrs(rng: Rng, n: number, p: number): number {
  const stddev = Math.sqrt(n * p * (1 - p));
  const b = 1.15 + 2.53 * stddev;
  const a = -0.0873 + 0.0248 * b + 0.01 * p;
  const c = n * p + 0.5;
  const vR = 0.92 - 4.2 / b;
  const r = p / (1 - p);
  const alpha = (2.83 + 5.1 / b) * stddev;
  const m = Math.floor((n + 1) * p);
  for (;;) {
    const u = rng() - 0.5;
    let v = rng();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + c);
    if (k < 0 || k > n) continue;
    if (us >= 0.07 && v <= vR) return k;
    v = Math.log((v * alpha) / (a / (us * us) + b));
    const upper =
      (m + 0.5) * Math.log((m + 1) / (r * (n - m + 1))) +
      (n + 1) * Math.log((n - m + 1) / (n - k + 1)) +
      (k + 0.5) * Math.log((r * (n - k + 1)) / (k + 1)) +
      stirlingTail(m) +
      stirlingTail(n - m) -
      stirlingTail(k) -
      stirlingTail(n - k);
    if (v <= upper) return k;
  }
}

/**
 * One Binomial(n, p) draw.
 * @param n number of trials, a non-negative integer.
 * @param p success probability in [0, 1].
 * @returns an integer in 0 … n.
 * @throws Error on a non-integer n or p outside [0, 1].
 */
export function sampleBinomial(rng: Rng, n: number, p: number): number {
  if (!Number.isInteger(n) || n < 0) throw new Error(`Binomial n must be a non-negative integer, got ${n}`);
  if (!(p >= 0 && p <= 1)) throw new Error(`Binomial p must be in [0, 1], got ${p}`);
  if (n === 0 || p === 0) return 0;
  if (p === 1) return n;
  if (p > 0.5) return n - sampleBinomial(rng, n, 1 - p);
  if (n * p >= 10) return btrs(rng, n, p);
  // inversion: count geometric waiting times until they pass n
  const l1p = Math.log1p(-p);
  let sum = 0;
  let k = 0;
  for (;;) {
    sum += Math.ceil(Math.log(rng()) / l1p);
    if (sum > n) return k;
    k++;
  }
}

function checkNoise(noise: number): void {
  if (!(noise >= 0 && noise < 1)) throw new Error(`noise (the fraction of counts removed) must be in [0, 1), got ${noise}`);
}

/**
 * Downsample one cell's counts.
 * @param counts `[m]` non-negative counts (integers for `binomial`; any non-negative values for `scprint`).
 * @param noise p ∈ [0, 1): the fraction removed (binomial) or scPRINT's noise level.
 * @param method `scprint` (default) or `binomial`.
 * @param rng seeded generator; draws per gene in order (scprint: the Poisson draw, then the Bernoulli).
 * @returns `[m]` float32 downsampled counts (a new array; zeros stay 0 and draw nothing).
 * @throws Error on a bad noise level, or a negative / non-integer (binomial) count, naming the position.
 */
export function downsampleCounts(counts: ArrayLike<number>, noise: number, method: DownsampleMethod, rng: Rng): Float32Array {
  checkNoise(noise);
  const m = counts.length;
  const out = new Float32Array(m);
  const q2 = (1.1 * noise) / 2;
  for (let i = 0; i < m; i++) {
    const x = counts[i];
    if (!(x >= 0) || !Number.isFinite(x)) throw new Error(`downsampling: count ${x} at position ${i} is not a finite non-negative number`);
    if (x === 0) continue;
    if (method === "binomial") {
      if (!Number.isInteger(x)) throw new Error(`downsampling (binomial): count ${x} at position ${i} is not an integer`);
      out[i] = sampleBinomial(rng, x, 1 - noise);
    } else if (method === "scprint") {
      const r = samplePoisson(rng, q2 * x);
      const keep = rng() >= q2; // Bernoulli(1 − q/2)
      out[i] = keep ? Math.max(0, x - r) : 0;
    } else throw new Error(`unknown downsampling method "${String(method)}" (expected scprint or binomial)`);
  }
  return out;
}

/**
 * E[x'] of one gene with count x under {@link downsampleCounts} (what the tests check the sampler against).
 * binomial: (1 − p)·x. scprint: (1 − q/2)·Σ_{k < x} (x − k)·Poisson(k; q·x/2), q = 1.1·p — less than
 * (1 − q/2)² · x because of the clamp at 0.
 */
export function expectedDownsampled(x: number, noise: number, method: DownsampleMethod): number {
  checkNoise(noise);
  if (method === "binomial") return (1 - noise) * x;
  const q2 = (1.1 * noise) / 2;
  const lam = q2 * x;
  if (lam === 0) return x;
  let s = 0;
  for (let k = 0; k < x; k++) s += (x - k) * Math.exp(-lam + k * Math.log(lam) - lgammaF64(k + 1));
  return (1 - q2) * s;
}
