import { describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import { useBackend } from "./helpers.js";
import {
  digamma,
  digammaDiff,
  digammaF64,
  lgammaDiff,
  log1pAccurate,
  dispersionFromRaw,
  lgamma,
  lgammaF64,
  nbNll,
  nbNllF64,
  poissonNll,
  poissonNllF64,
  zinbNll,
  zinbNllF64,
} from "../../src/model/likelihoods.js";

// Hand-computed from the textbook forms (no ε): ZINB x=0: −log[π + (1−π)(θ/(θ+μ))^θ];
// x>0: −[log(1−π) + lgamma(x+θ) − lgamma(θ) − lgamma(x+1) + θ log(θ/(θ+μ)) + x log(μ/(θ+μ))];
// NB: the same without log(1−π) / the zero case; Poisson: −(x log μ − μ − lgamma(x+1)). Python math.lgamma.
const POINTS: { x: number; mu: number; theta: number; pi: number; zinb: number; nb: number }[] = [
  { x: 0, mu: 2.5, theta: 1.3, pi: 0.2, zinb: 0.9203492036183312, nb: 1.3944278429443036 },
  { x: 3, mu: 2.5, theta: 1.3, pi: 0.2, zinb: 2.376266012186095, nb: 2.1531224608718853 },
  { x: 7, mu: 0.4, theta: 10, pi: 0.05, zinb: 13.90530492713695, nb: 13.854011632749398 },
  { x: 1, mu: 10, theta: 0.5, pi: 0.7, zinb: 3.4681713679170256, nb: 2.2641985635910897 },
  { x: 25, mu: 30, theta: 100, pi: 0.01, zinb: 2.9980486024085167, nb: 2.987998266554996 },
  { x: 0, mu: 0.001, theta: 2, pi: 0.5, zinb: 0.0004997501041275903, nb: 0.000999750083302085 },
  { x: 2, mu: 1.7, theta: 0.05, pi: 0.3, zinb: 4.232506710704212, nb: 3.8758317667654794 },
];
const POISSON = [
  { x: 0, mu: 2.5, nll: 2.5 },
  { x: 3, mu: 2.5, nll: 1.54288727360559 },
  { x: 12, mu: 8.2, nll: 2.9376046444193946 },
];
const logit = (p: number) => Math.log(p / (1 - p));
const close = (a: number, b: number, tol: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b)));

describe("special functions", () => {
  const LG: [number, number][] = [
    [0.5, 0.5723649429247004],
    [0.001, 6.907178885383854],
    [1, 0],
    [3, 0.693147180559945],
    [4.5, 2.453736570842443],
    [10, 12.801827480081467],
    [100, 359.1342053695754],
    [1234.5, 7550.550901077896],
  ];
  const DG: [number, number][] = [
    [0.5, -1.9635100260214235], // −γ − 2 ln 2
    [1, -0.5772156649015329], // −γ
    [3.7, 1.1671535393615113],
    [10, 2.251752589066721],
    [250, 5.519459584531046],
  ];
  it("lgammaF64 / digammaF64 match known values to 1e-13", () => {
    for (const [x, v] of LG) close(lgammaF64(x), v, 1e-13);
    for (const [x, v] of DG) close(digammaF64(x), v, 1e-13);
    expect(() => lgammaF64(0)).toThrow(/positive and finite/);
  });
  for (const backend of ["cpu", "wasm"] as const) {
    it(`tfjs lgamma / digamma on ${backend} match known values (float32)`, async () => {
      await useBackend(backend);
      const lg = lgamma(tf.tensor1d(LG.map((p) => p[0]))).dataSync();
      LG.forEach(([, v], i) => close(lg[i], v, 2e-6));
      const dg = digamma(tf.tensor1d(DG.map((p) => p[0]))).dataSync();
      DG.forEach(([, v], i) => close(dg[i], v, 2e-6));
    });
  }
});

describe("float64 reference NLLs equal the hand-computed values", () => {
  it("ZINB, NB, Poisson to 1e-7 (the ε = 1e-8 terms move them by less)", () => {
    for (const p of POINTS) {
      close(zinbNllF64(p.x, p.mu, p.theta, logit(p.pi)), p.zinb, 1e-7);
      close(nbNllF64(p.x, p.mu, p.theta), p.nb, 1e-7);
    }
    for (const p of POISSON) close(poissonNllF64(p.x, p.mu), p.nll, 1e-7);
  });
});

/** Central finite difference of a float64 function. */
function fd(f: (v: number) => number, v: number): number {
  const h = 1e-6 * Math.max(1, Math.abs(v));
  return (f(v + h) - f(v - h)) / (2 * h);
}

for (const backend of ["cpu", "wasm"] as const) {
  describe(`likelihood ops on ${backend}`, () => {
    const t = (a: number[]) => tf.tensor1d(a);
    const col = <K extends keyof (typeof POINTS)[number]>(k: K) => POINTS.map((p) => p[k] as number);

    it("NLLs match the hand-computed values to 1e-5", async () => {
      await useBackend(backend);
      const z = zinbNll(t(col("x")), t(col("mu")), t(col("theta")), t(POINTS.map((p) => logit(p.pi)))).dataSync();
      const n = nbNll(t(col("x")), t(col("mu")), t(col("theta"))).dataSync();
      POINTS.forEach((p, i) => {
        close(z[i], p.zinb, 1e-5);
        close(n[i], p.nb, 1e-5);
      });
      const po = poissonNll(t(POISSON.map((p) => p.x)), t(POISSON.map((p) => p.mu))).dataSync();
      POISSON.forEach((p, i) => close(po[i], p.nll, 1e-5));
    });

    it("gradients in mu, theta and psi match finite differences of the float64 forms", async () => {
      await useBackend(backend);
      const x = t(col("x"));
      const psi0 = POINTS.map((p) => logit(p.pi));
      const [gMu, gTh, gPsi] = tf.grads((mu: tf.Tensor, th: tf.Tensor, ps: tf.Tensor) => tf.sum(zinbNll(x, mu, th, ps)))([
        t(col("mu")),
        t(col("theta")),
        t(psi0),
      ]);
      const [nMu, nTh] = tf.grads((mu: tf.Tensor, th: tf.Tensor) => tf.sum(nbNll(x, mu, th)))([t(col("mu")), t(col("theta"))]);
      const [pMu] = tf.grads((mu: tf.Tensor) => tf.sum(poissonNll(x, mu)))([t(col("mu"))]);
      const gm = gMu.dataSync(), gt = gTh.dataSync(), gp = gPsi.dataSync(), nm = nMu.dataSync(), nt = nTh.dataSync(), pm = pMu.dataSync();
      POINTS.forEach((p, i) => {
        const psi = psi0[i];
        close(gm[i], fd((m) => zinbNllF64(p.x, m, p.theta, psi), p.mu), 1e-4);
        close(gt[i], fd((th) => zinbNllF64(p.x, p.mu, th, psi), p.theta), 1e-4);
        close(gp[i], fd((s) => zinbNllF64(p.x, p.mu, p.theta, s), psi), 1e-4);
        close(nm[i], fd((m) => nbNllF64(p.x, m, p.theta), p.mu), 1e-4);
        close(nt[i], fd((th) => nbNllF64(p.x, p.mu, th), p.theta), 1e-4);
        close(pm[i], fd((m) => poissonNllF64(p.x, m), p.mu), 1e-4);
      });
    });

    it("values and gradients stay finite as pi -> 0 / 1, theta large, mu -> 0", async () => {
      await useBackend(backend);
      const xs = [0, 3, 0, 3, 0, 3, 0, 3, 0, 40];
      const mus = [2, 2, 2, 2, 2, 2, 1e-12, 1e-12, 0, 5];
      const ths = [1.5, 1.5, 1.5, 1.5, 3e6, 3e6, 1, 1, 1e-6, 3e6];
      const psis = [-40, -40, 40, 40, -40, -40, 0, 0, 0, -40];
      const [gMu, gTh, gPsi] = tf.grads((mu: tf.Tensor, th: tf.Tensor, ps: tf.Tensor) => tf.sum(zinbNll(t(xs), mu, th, ps)))([t(mus), t(ths), t(psis)]);
      const vals = zinbNll(t(xs), t(mus), t(ths), t(psis)).dataSync();
      const nbv = nbNll(t(xs), t(mus), t(ths)).dataSync();
      const [nbMu, nbTh] = tf.grads((mu: tf.Tensor, th: tf.Tensor) => tf.sum(nbNll(t(xs), mu, th)))([t(mus), t(ths)]);
      for (const a of [vals, nbv, gMu.dataSync(), gTh.dataSync(), gPsi.dataSync(), nbMu.dataSync(), nbTh.dataSync()]) {
        for (const v of a) expect(Number.isFinite(v)).toBe(true);
      }
      // pi -> 0 recovers the NB; pi -> 1 puts all mass on 0 (x = 0 costs nothing)
      close(vals[0], nbNllF64(0, 2, 1.5), 1e-5);
      close(vals[1], nbNllF64(3, 2, 1.5), 1e-5);
      expect(Math.abs(vals[2])).toBeLessThan(1e-6);
      // theta large -> the float64 NB, close to the Poisson (the literal float32 form would be off by ~1 here)
      close(vals[4], nbNllF64(0, 2, 3e6), 1e-5);
      close(vals[5], nbNllF64(3, 2, 3e6), 1e-5);
      close(vals[9], nbNllF64(40, 5, 3e6), 1e-5);
      close(vals[5], poissonNllF64(3, 2), 1e-5);
      close(gMu.dataSync()[5], -(3 / 2 - (3e6 + 3) / (3e6 + 2)), 1e-5); // analytic: the float64 finite difference is too noisy here
      // d/dtheta at theta = 3e6 is ~1e-13: the stable forms keep it tiny (literal forms give ~1e-6 noise)
      expect(Math.abs(gTh.dataSync()[5])).toBeLessThan(1e-9);
      expect(Math.abs(gTh.dataSync()[9])).toBeLessThan(1e-9);
      // mu -> 0 with x = 0: NLL -> 0
      expect(Math.abs(vals[6])).toBeLessThan(1e-6);
    });

    it("dispersionFromRaw = exp(min(v, 15)) with gradient theta below the cap, 0 above", async () => {
      await useBackend(backend);
      const v = t([-2, 0, 3, 20]);
      const th = dispersionFromRaw(v).dataSync();
      close(th[2], Math.exp(3), 1e-6);
      close(th[3], Math.exp(15), 1e-6);
      const g = tf.grad((u: tf.Tensor) => tf.sum(dispersionFromRaw(u)))(v).dataSync();
      close(g[0], Math.exp(-2), 1e-6);
      expect(g[3]).toBe(0);
    });

    it("rejects inputs of different shapes", async () => {
      await useBackend(backend);
      expect(() => nbNll(t([1, 2]), t([1]), t([1, 2]))).toThrow(/nbNll: all inputs must have the same shape/);
    });

    it("log1pAccurate is accurate for small arguments (wasm's Log1p kernel is not)", async () => {
      await useBackend(backend);
      const us = [1e-9, 1e-7, 6.67e-7, 1e-4, 0.5, 30, -0.5];
      const r = log1pAccurate(t(us)).dataSync();
      us.forEach((u, i) => expect(Math.abs(r[i] - Math.log1p(u))).toBeLessThanOrEqual(3e-7 * Math.abs(Math.log1p(u))));
    });

    it("lgammaDiff / digammaDiff match float64 differences across the theta = 8 switch and at theta = 3e6", async () => {
      await useBackend(backend);
      const th = [0.3, 7.9, 8, 10, 250, 3e6, 3e6];
      const xs = [4, 2, 2, 5, 17, 3, 40];
      const lg = lgammaDiff(t(th), t(xs)).dataSync();
      const dg = digammaDiff(t(th), t(xs)).dataSync();
      th.forEach((a, i) => {
        // float64 reference; at theta = 3e6 the float64 lgamma difference itself carries ~1e-8
        close(lg[i], lgammaF64(a + xs[i]) - lgammaF64(a), 2e-6);
        const ref = digammaF64(a + xs[i]) - digammaF64(a); // 1e-6 at theta = 3e6: check it relatively
        expect(Math.abs(dg[i] - ref)).toBeLessThanOrEqual(1e-5 * Math.abs(ref) + 1e-9);
      });
      expect(lgammaDiff(t([5e4]), t([0])).dataSync()[0]).toBe(0);
    });
  });
}
