import { describe, expect, it } from "vitest";
import { makeRng } from "../../src/rng.js";
import { downsampleCounts, expectedDownsampled, sampleBinomial, samplePoisson } from "../../src/train/downsample.js";

function moments(draw: () => number, n: number): { mean: number; variance: number } {
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const v = draw();
    s += v;
    s2 += v * v;
  }
  const mean = s / n;
  return { mean, variance: s2 / n - mean * mean };
}

describe("samplers", () => {
  it("Poisson: mean and variance = lambda on both paths (multiplication < 10, PTRS >= 10)", () => {
    const rng = makeRng(1);
    const N = 40_000;
    for (const lam of [0.3, 4, 9.9, 10, 66, 1500]) {
      const m = moments(() => samplePoisson(rng, lam), N);
      const se = Math.sqrt(lam / N);
      expect(Math.abs(m.mean - lam)).toBeLessThan(4.5 * se);
      expect(Math.abs(m.variance / lam - 1)).toBeLessThan(0.05);
    }
    expect(samplePoisson(rng, 0)).toBe(0);
    expect(() => samplePoisson(rng, -1)).toThrow(/rate/);
  });

  it("Binomial: mean n p and variance n p (1 - p) on both paths (inversion, BTRS), p > 0.5 mirrored", () => {
    const rng = makeRng(2);
    const N = 40_000;
    for (const [n, p] of [[3, 0.4], [20, 0.3], [40, 0.4], [200, 0.4], [5000, 0.4], [300, 0.9]] as const) {
      const m = moments(() => sampleBinomial(rng, n, p), N);
      const v = n * p * (1 - p);
      expect(Math.abs(m.mean - n * p)).toBeLessThan(4.5 * Math.sqrt(v / N));
      expect(Math.abs(m.variance / v - 1)).toBeLessThan(0.05);
    }
    for (let i = 0; i < 1000; i++) {
      const k = sampleBinomial(rng, 12, 0.7);
      expect(k >= 0 && k <= 12 && Number.isInteger(k)).toBe(true);
    }
    expect([sampleBinomial(rng, 9, 0), sampleBinomial(rng, 9, 1), sampleBinomial(rng, 0, 0.5)]).toEqual([0, 9, 0]);
  });
});

describe("downsampleCounts keeps its expected mean", () => {
  for (const method of ["binomial", "scprint"] as const) {
    it(`${method}: the mean over many draws equals expectedDownsampled for counts 1..300 (noise 0.6 and 0.3)`, () => {
      const rng = makeRng(`ds-${method}`);
      const counts = [1, 2, 3, 5, 8, 20, 60, 300];
      const N = 20_000;
      for (const noise of [0.6, 0.3]) {
        const sum = new Float64Array(counts.length);
        const sum2 = new Float64Array(counts.length);
        for (let r = 0; r < N; r++) {
          const d = downsampleCounts(counts, noise, method, rng);
          for (let i = 0; i < counts.length; i++) {
            sum[i] += d[i];
            sum2[i] += d[i] * d[i];
          }
        }
        counts.forEach((x, i) => {
          const mean = sum[i] / N;
          const sd = Math.sqrt(Math.max(1e-12, sum2[i] / N - mean * mean));
          const e = expectedDownsampled(x, noise, method);
          expect(Math.abs(mean - e)).toBeLessThan(4.5 * (sd / Math.sqrt(N)) + 1e-9);
        });
      }
    });
  }

  it("expected means: binomial keeps (1 - p) x; scPRINT's method removes about 55 % of the counts at p = 0.6", () => {
    expect(expectedDownsampled(10, 0.6, "binomial")).toBeCloseTo(4, 12);
    // (1 - q/2) E[max(0, x - r)] with q = 0.66: for large x about (1 - 0.33)^2 x
    expect(expectedDownsampled(1000, 0.6, "scprint") / 1000).toBeCloseTo(0.67 * 0.67, 2);
    expect(expectedDownsampled(1, 0.6, "scprint")).toBeCloseTo(0.67 * Math.exp(-0.33), 12);
    expect(expectedDownsampled(7, 0, "scprint")).toBe(7);
  });

  it("zeros stay zero, the same seed gives the same profile, and bad input is refused", () => {
    const a = downsampleCounts([0, 4, 0, 9], 0.6, "scprint", makeRng(5));
    const b = downsampleCounts([0, 4, 0, 9], 0.6, "scprint", makeRng(5));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect([a[0], a[2]]).toEqual([0, 0]);
    expect(() => downsampleCounts([1], 1, "binomial", makeRng(1))).toThrow(/noise .* must be in \[0, 1\)/);
    expect(() => downsampleCounts([1.5], 0.5, "binomial", makeRng(1))).toThrow(/count 1.5 at position 0 is not an integer/);
    expect(() => downsampleCounts([-1], 0.5, "scprint", makeRng(1))).toThrow(/position 0/);
  });
});
