/**
 * Count likelihoods of the denoising objective: zero-inflated negative binomial (ZINB), negative
 * binomial (NB) and Poisson negative log-likelihoods, as TensorFlow.js ops with analytic gradients,
 * plus the special functions they need (tfjs has no `lgamma` / `digamma`).
 *
 * Forms (ε = 1e-8), from scvi-tools `scvi/distributions/_negative_binomial.py` (`log_zinb_positive`,
 * `log_nb_positive`), the loss scPRINT uses (cantinilab/scPRINT `scprint/model/loss.py@6bbe1a7`, `zinb`),
 * with μ the mean, θ the inverse dispersion and ψ the zero-inflation logit (π = sigmoid(ψ)):
 *
 *     L = log(θ + μ + ε)
 *     NB:        ℓ = θ·(log(θ+ε) − L) + x·(log(μ+ε) − L) + lgamma(x+θ) − lgamma(θ) − lgamma(x+1)
 *     ZINB x=0:  ℓ = softplus(−ψ + θ·(log(θ+ε) − L)) − softplus(−ψ)          (= log[π + (1−π)(θ/(θ+μ))^θ])
 *     ZINB x>0:  ℓ = −softplus(−ψ) − ψ + θ·(log(θ+ε) − L) + x·(log(μ+ε) − L)
 *                   + lgamma(x+θ) − lgamma(θ) − lgamma(x+1)                  (= log(1−π) + log NB)
 *     Poisson:   ℓ = x·log(μ+ε) − μ − lgamma(x+1)   (ε-stabilised like the NB, finite as μ → 0)
 *
 * The ops return the **elementwise** negative log-likelihood −ℓ (reduce it in the objective: scPRINT
 * averages over cells and context genes, scVI sums over genes per cell). Gradients with respect to
 * μ, θ and ψ are closed-form (digamma for the lgamma terms) through `tf.customGrad`, so the backward pass
 * needs no registered kernel gradient and runs the same on the wasm, cpu and tensorflow backends
 * (only elementwise kernels that all three have: Log, Softplus, Sigmoid, Select, Minimum, ...; not
 * wasm's inaccurate Log1p, see {@link log1pAccurate}).
 *
 * Precision: float32. Computed literally (as scVI does), log(θ+ε) − log(θ+μ+ε) and
 * lgamma(x+θ) − lgamma(θ) cancel catastrophically at large θ (an absolute error of ~1e-7·θ·log θ per
 * entry: ±4 at scPRINT's cap θ = e^15). cellfm evaluates the same quantities in forms that do not cancel:
 * −log1p(μ/(θ+ε)), a Stirling-difference {@link lgammaDiff} and {@link digammaDiff} for θ ≥ 8, so the NLL
 * and its gradients stay accurate up to the cap (equal to the literal form to float32 rounding elsewhere).
 */
import * as tf from "@tensorflow/tfjs-core";
import { custom } from "./ops.js";

/** ε of scVI's stable forms. */
export const LIKELIHOOD_EPS = 1e-8;

/** `training.likelihood` choices (zod enums and messages are built from this list). */
export const LIKELIHOODS = ["zinb", "nb", "poisson"] as const;
export type Likelihood = (typeof LIKELIHOODS)[number];

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/**
 * log Γ(x) for x > 0 in float64: Stirling's series (10 terms) at x + n ≥ 7, shifted back by
 * log Γ(x) = log Γ(x + n) − Σ log(x + i) (numpy `random_loggam`'s scheme). Absolute error < 1e-14 for
 * moderate x; relative ~1e-15 for large x.
 * @throws Error on x ≤ 0 or a non-finite x.
 */
export function lgammaF64(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new Error(`lgamma: argument must be positive and finite, got ${x}`);
  if (x === 1 || x === 2) return 0;
  let shift = 0;
  let z = x;
  while (z < 7) {
    shift += Math.log(z);
    z += 1;
  }
  const z2 = 1 / (z * z);
  // Bernoulli-number coefficients B_2k / (2k (2k − 1))
  const a = [
    8.333333333333333e-2, -2.777777777777778e-3, 7.936507936507937e-4, -5.952380952380952e-4, 8.417508417508418e-4,
    -1.917526917526918e-3, 6.41025641025641e-3, -2.955065359477124e-2, 1.796443723688307e-1, -1.3924322169059,
  ];
  let s = a[9];
  for (let k = 8; k >= 0; k--) s = s * z2 + a[k];
  return s / z + HALF_LOG_2PI + (z - 0.5) * Math.log(z) - z - shift;
}

/**
 * ψ(x) = d/dx log Γ(x) for x > 0 in float64: recurrence ψ(x) = ψ(x+1) − 1/x up to x ≥ 10, then the
 * asymptotic series ln x − 1/(2x) − Σ B_2k / (2k x^2k).
 * @throws Error on x ≤ 0 or a non-finite x.
 */
export function digammaF64(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new Error(`digamma: argument must be positive and finite, got ${x}`);
  let r = 0;
  let z = x;
  while (z < 10) {
    r -= 1 / z;
    z += 1;
  }
  const z2 = 1 / (z * z);
  const series = z2 * (1 / 12 - z2 * (1 / 120 - z2 * (1 / 252 - z2 * (1 / 240 - z2 * (1 / 132)))));
  return r + Math.log(z) - 0.5 / z - series;
}

function softplusF64(z: number): number {
  return Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));
}

/**
 * Reference (float64, scalar) negative log-likelihoods, the formulas of the module comment; used by
 * the tests and by baselines computed outside tfjs.
 * @param x observed count ≥ 0; @param mu mean ≥ 0; @param theta inverse dispersion > 0; @param psi zero-inflation logit.
 */
export function zinbNllF64(x: number, mu: number, theta: number, psi: number, eps = LIKELIHOOD_EPS): number {
  const L = Math.log(theta + mu + eps);
  const A = theta * (Math.log(theta + eps) - L);
  if (x < eps) return -(softplusF64(-psi + A) - softplusF64(-psi));
  return -(-softplusF64(-psi) - psi + A + x * (Math.log(mu + eps) - L) + lgammaF64(x + theta) - lgammaF64(theta) - lgammaF64(x + 1));
}

/** Float64 NB negative log-likelihood (see {@link zinbNllF64}). */
export function nbNllF64(x: number, mu: number, theta: number, eps = LIKELIHOOD_EPS): number {
  const L = Math.log(theta + mu + eps);
  return -(theta * (Math.log(theta + eps) - L) + x * (Math.log(mu + eps) - L) + lgammaF64(x + theta) - lgammaF64(theta) - lgammaF64(x + 1));
}

/** Float64 Poisson negative log-likelihood (see {@link zinbNllF64}). */
export function poissonNllF64(x: number, mu: number, eps = LIKELIHOOD_EPS): number {
  return -(x * Math.log(mu + eps) - mu - lgammaF64(x + 1));
}

/**
 * log Γ(x) elementwise, float32, for x > 0: Stirling's series (3 terms) at z ≥ 8, with
 * log Γ(x) = log Γ(x + 8) − log(x (x+1) … (x+7)) below 8 (the product is formed from min(x, 8), so
 * nothing overflows on the branch not taken). Absolute error ~1e-6 (float32 rounding) for x ≤ 100,
 * relative ~1e-7 above. No gradient is defined (the likelihood ops differentiate analytically).
 * @param x any shape, float32, > 0.
 * @returns same shape, float32.
 */
export function lgamma(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const small = tf.less(x, 8);
    const xs = tf.minimum(x, 8);
    let prod = xs;
    for (let i = 1; i < 8; i++) prod = tf.mul(prod, tf.add(xs, i));
    const z = tf.where(small, tf.add(xs, 8), x);
    const zi = tf.reciprocal(z);
    const zi2 = tf.square(zi);
    // 1/(12z) − 1/(360z³) + 1/(1260z⁵)
    const series = tf.mul(zi, tf.add(1 / 12, tf.mul(zi2, tf.add(-1 / 360, tf.mul(zi2, 1 / 1260)))));
    const st = tf.add(tf.sub(tf.mul(tf.sub(z, 0.5), tf.log(z)), z), tf.add(series, HALF_LOG_2PI));
    return tf.sub(st, tf.where(small, tf.log(prod), tf.zerosLike(x)));
  });
}

/**
 * ψ(x) elementwise, float32, for x > 0: ψ(x) = ψ(x + 6) − Σ_{i<6} 1/(x + i) below 6 (from min(x, 6)),
 * asymptotic series at z ≥ 6.
 * @param x any shape, float32, > 0. @returns same shape, float32.
 */
export function digamma(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const small = tf.less(x, 6);
    const xs = tf.minimum(x, 6);
    let rec = tf.reciprocal(xs);
    for (let i = 1; i < 6; i++) rec = tf.add(rec, tf.reciprocal(tf.add(xs, i)));
    const z = tf.where(small, tf.add(xs, 6), x);
    const zi = tf.reciprocal(z);
    const zi2 = tf.square(zi);
    // 1/(12z²) − 1/(120z⁴) + 1/(252z⁶)
    const series = tf.mul(zi2, tf.add(1 / 12, tf.mul(zi2, tf.add(-1 / 120, tf.mul(zi2, 1 / 252)))));
    const asym = tf.sub(tf.sub(tf.log(z), tf.mul(zi, 0.5)), series);
    return tf.sub(asym, tf.where(small, rec, tf.zerosLike(x)));
  });
}

function sameShapes(name: string, ts: tf.Tensor[]): void {
  const s0 = ts[0].shape.join(",");
  for (const t of ts) {
    if (t.shape.join(",") !== s0) throw new Error(`${name}: all inputs must have the same shape, got [${ts.map((u) => `[${u.shape.join(", ")}]`).join(", ")}]`);
  }
}

/**
 * log(1 + u) elementwise, float32, accurate for small u on every backend: tfjs-backend-wasm 4.22's
 * `Log1p` kernel computes log(1 + u) literally (measured: log1p(1e-7) = 1.19e-7), so this uses Kahan's
 * form w = 1 + u, log1p(u) = u when w = 1, else log(w)·u / (w − 1). No gradient (forward use only).
 * @param u any shape, float32, > −1. @returns same shape, float32.
 */
export function log1pAccurate(u: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const w = tf.add(u, 1);
    const d = tf.sub(w, 1);
    const one = tf.equal(d, 0);
    const safeD = tf.where(one, tf.onesLike(d), d);
    return tf.where(one, u, tf.div(tf.mul(tf.log(w), u), safeD));
  });
}

/** 1/(12z) − 1/(360z³) + 1/(1260z⁵): the tail of Stirling's series for log Γ. */
function stirlingSeries(z: tf.Tensor): tf.Tensor {
  const zi = tf.reciprocal(z);
  const zi2 = tf.square(zi);
  return tf.mul(zi, tf.add(1 / 12, tf.mul(zi2, tf.add(-1 / 360, tf.mul(zi2, 1 / 1260)))));
}

/**
 * lgamma(θ + x) − lgamma(θ) elementwise, float32, θ > 0, x ≥ 0, without the cancellation of the plain
 * difference at large θ: for θ ≥ 8, Stirling's form (θ − ½)·log1p(x/θ) + x·log(θ + x) − x + S(θ+x) − S(θ)
 * (exactly 0 at x = 0); below 8 the plain difference (both terms are then small or x-dominated).
 * @param theta any shape, float32, > 0. @param x same shape, ≥ 0. @returns same shape, float32.
 */
export function lgammaDiff(theta: tf.Tensor, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const big = tf.greaterEqual(theta, 8);
    const tb = tf.maximum(theta, 8);
    const xb = tf.where(big, x, tf.zerosLike(x));
    const txb = tf.add(tb, xb);
    const stable = tf.add(
      tf.add(tf.mul(tf.sub(tb, 0.5), log1pAccurate(tf.div(xb, tb))), tf.sub(tf.mul(xb, tf.log(txb)), xb)),
      tf.sub(stirlingSeries(txb), stirlingSeries(tb)),
    );
    const ts = tf.minimum(theta, 8);
    const plain = tf.sub(lgamma(tf.add(x, ts)), lgamma(ts));
    return tf.where(big, stable, plain);
  });
}

/**
 * ψ(θ + x) − ψ(θ) elementwise, float32, θ > 0, x ≥ 0: for θ ≥ 8 the asymptotic difference
 * log1p(x/θ) + x/(2θ(θ+x)) + (1/θ² − 1/(θ+x)²)/12 − (1/θ⁴ − 1/(θ+x)⁴)/120 (no cancellation of two
 * ≈ log θ terms); below 8 the plain difference.
 * @param theta any shape, float32, > 0. @param x same shape, ≥ 0. @returns same shape, float32.
 */
export function digammaDiff(theta: tf.Tensor, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const big = tf.greaterEqual(theta, 8);
    const tb = tf.maximum(theta, 8);
    const xb = tf.where(big, x, tf.zerosLike(x));
    const txb = tf.add(tb, xb);
    const a2 = tf.reciprocal(tf.square(tb));
    const b2 = tf.reciprocal(tf.square(txb));
    const stable = tf.add(
      tf.add(log1pAccurate(tf.div(xb, tb)), tf.div(xb, tf.mul(tf.mul(tb, txb), 2))),
      tf.sub(tf.mul(tf.sub(a2, b2), 1 / 12), tf.mul(tf.sub(tf.square(a2), tf.square(b2)), 1 / 120)),
    );
    const ts = tf.minimum(theta, 8);
    const plain = tf.sub(digamma(tf.add(x, ts)), digamma(ts));
    return tf.where(big, stable, plain);
  });
}

/**
 * The shared pieces of NB and ZINB: log(θ+ε) − log(θ+μ+ε) computed as −log1p(μ/(θ+ε)) (equal, without
 * the cancellation at large θ), s = θ+μ+ε and log s.
 */
function nbParts(mu: tf.Tensor, theta: tf.Tensor, eps: number) {
  const te = tf.add(theta, eps);
  const s = tf.add(te, mu);
  return { te, s, logS: tf.log(s), logRatio: tf.neg(log1pAccurate(tf.div(mu, te))) };
}

/** The NB log-likelihood: θ·logRatio + x·(log(μ+ε) − log s) + [lgamma(x+θ) − lgamma(θ)] − lgamma(x+1). */
function nbLogLik(x: tf.Tensor, mu: tf.Tensor, theta: tf.Tensor, logRatio: tf.Tensor, logS: tf.Tensor, eps: number): tf.Tensor {
  const a = tf.mul(theta, logRatio);
  const b = tf.mul(x, tf.sub(tf.log(tf.add(mu, eps)), logS));
  const g = tf.sub(lgammaDiff(theta, x), lgamma(tf.add(x, 1)));
  return tf.add(tf.add(a, b), g);
}

/**
 * ∂ℓ_NB/∂μ = x/(μ+ε) − (θ+x)/s and ∂ℓ_NB/∂θ = logRatio + θ/(θ+ε) − (θ+x)/s + ψ(x+θ) − ψ(θ), the middle
 * pair combined as (θ(μ − x) − xε) / ((θ+ε)·s) so nothing cancels at large θ.
 */
function nbGrads(x: tf.Tensor, mu: tf.Tensor, theta: tf.Tensor, eps: number): { dMu: tf.Tensor; dTheta: tf.Tensor } {
  const { te, s, logRatio } = nbParts(mu, theta, eps);
  const dMu = tf.sub(tf.div(x, tf.add(mu, eps)), tf.div(tf.add(theta, x), s));
  const mid = tf.div(tf.sub(tf.mul(theta, tf.sub(mu, x)), tf.mul(x, eps)), tf.mul(te, s));
  const dTheta = tf.add(tf.add(logRatio, mid), digammaDiff(theta, x));
  return { dMu, dTheta };
}

const zinbOpMake = (eps: number) =>
  custom(4, ([x, mu, theta, psi], save) => {
    save([x, mu, theta, psi]);
    const value = tf.tidy(() => {
      const { logRatio, logS } = nbParts(mu, theta, eps);
      const spNegPsi = tf.softplus(tf.neg(psi));
      const piThetaLog = tf.add(tf.neg(psi), tf.mul(theta, logRatio));
      const caseZero = tf.sub(tf.softplus(piThetaLog), spNegPsi);
      const nb = nbLogLik(x, mu, theta, logRatio, logS, eps);
      const caseNonZero = tf.sub(tf.add(nb, tf.neg(psi)), spNegPsi);
      return tf.neg(tf.where(tf.less(x, eps), caseZero, caseNonZero));
    });
    return {
      value,
      gradFunc: (dy, [xs, m, th, p]) => {
        const zero = tf.less(xs, eps);
        const { te, logRatio, s } = nbParts(m, th, eps);
        const w = tf.add(tf.neg(p), tf.mul(th, logRatio));
        const sw = tf.sigmoid(w);
        // zero case: ∂ψ = σ(−ψ) − σ(w), ∂μ = −σ(w)·θ/s, ∂θ = σ(w)·(logRatio + θ/(θ+ε) − θ/s)
        // with θ/(θ+ε) − θ/s = θμ / ((θ+ε)·s)
        const dPsi0 = tf.sub(tf.sigmoid(tf.neg(p)), sw);
        const dMu0 = tf.neg(tf.mul(sw, tf.div(th, s)));
        const dTh0 = tf.mul(sw, tf.add(logRatio, tf.div(tf.mul(th, m), tf.mul(te, s))));
        // nonzero case: ∂ψ = −σ(ψ), ∂μ, ∂θ as the NB
        const dPsi1 = tf.neg(tf.sigmoid(p));
        const g1 = nbGrads(xs, m, th, eps);
        const ndy = tf.neg(dy);
        return [
          tf.zerosLike(xs),
          tf.mul(ndy, tf.where(zero, dMu0, g1.dMu)),
          tf.mul(ndy, tf.where(zero, dTh0, g1.dTheta)),
          tf.mul(ndy, tf.where(zero, dPsi0, dPsi1)),
        ];
      },
    };
  });

const nbOpMake = (eps: number) =>
  custom(3, ([x, mu, theta], save) => {
    save([x, mu, theta]);
    const value = tf.tidy(() => {
      const { logRatio, logS } = nbParts(mu, theta, eps);
      return tf.neg(nbLogLik(x, mu, theta, logRatio, logS, eps));
    });
    return {
      value,
      gradFunc: (dy, [xs, m, th]) => {
        const g = nbGrads(xs, m, th, eps);
        const ndy = tf.neg(dy);
        return [tf.zerosLike(xs), tf.mul(ndy, g.dMu), tf.mul(ndy, g.dTheta)];
      },
    };
  });

const poissonOpMake = (eps: number) =>
  custom(2, ([x, mu], save) => {
    save([x, mu]);
    const value = tf.tidy(() => tf.neg(tf.sub(tf.sub(tf.mul(x, tf.log(tf.add(mu, eps))), mu), lgamma(tf.add(x, 1)))));
    return {
      value,
      gradFunc: (dy, [xs, m]) => [tf.zerosLike(xs), tf.mul(tf.neg(dy), tf.sub(tf.div(xs, tf.add(m, eps)), 1))],
    };
  });

/** One customGrad function per (op, ε), built on first use. */
const opCache = new Map<string, (...t: tf.Tensor[]) => tf.Tensor>();
function cached(name: string, eps: number, make: (eps: number) => (...t: tf.Tensor[]) => tf.Tensor): (...t: tf.Tensor[]) => tf.Tensor {
  const key = `${name}:${eps}`;
  let f = opCache.get(key);
  if (!f) opCache.set(key, (f = make(eps)));
  return f;
}
const zinbOp = (eps: number) => cached("zinb", eps, zinbOpMake);
const nbOp = (eps: number) => cached("nb", eps, nbOpMake);
const poissonOp = (eps: number) => cached("poisson", eps, poissonOpMake);

/**
 * Elementwise ZINB negative log-likelihood −log p(x | μ, θ, π = sigmoid(ψ)) (scVI `log_zinb_positive`).
 * @param x observed counts, any shape, float32, ≥ 0.
 * @param mu means, same shape, ≥ 0.
 * @param theta inverse dispersions, same shape, > 0.
 * @param psi zero-inflation logits, same shape.
 * @returns same shape, float32; differentiable in mu, theta and psi (x gets a zero gradient).
 * @throws Error when the shapes differ.
 */
export function zinbNll(x: tf.Tensor, mu: tf.Tensor, theta: tf.Tensor, psi: tf.Tensor, eps = LIKELIHOOD_EPS): tf.Tensor {
  sameShapes("zinbNll", [x, mu, theta, psi]);
  return zinbOp(eps)(x, mu, theta, psi);
}

/**
 * Elementwise NB negative log-likelihood (scVI `log_nb_positive`). Shapes and gradients as {@link zinbNll}.
 * @throws Error when the shapes differ.
 */
export function nbNll(x: tf.Tensor, mu: tf.Tensor, theta: tf.Tensor, eps = LIKELIHOOD_EPS): tf.Tensor {
  sameShapes("nbNll", [x, mu, theta]);
  return nbOp(eps)(x, mu, theta);
}

/**
 * Elementwise Poisson negative log-likelihood μ − x·log(μ + ε) + lgamma(x + 1). Differentiable in mu.
 * @throws Error when the shapes differ.
 */
export function poissonNll(x: tf.Tensor, mu: tf.Tensor, eps = LIKELIHOOD_EPS): tf.Tensor {
  sameShapes("poissonNll", [x, mu]);
  return poissonOp(eps)(x, mu);
}

/** scPRINT's cap on the raw dispersion output: θ = exp(min(v, 15)) (`scprint/model/decoders.py`). */
export const MAX_LOG_THETA = 15;

/**
 * θ = exp(min(v, 15)) with its gradient θ·[v < 15] (tfjs registers no gradient for `Minimum` here).
 * @param v raw head output, any shape, float32. @returns same shape, float32, > 0.
 */
export const dispersionFromRaw: (v: tf.Tensor) => tf.Tensor = custom(1, ([v], save) => {
  const value = tf.exp(tf.minimum(v, MAX_LOG_THETA));
  save([v, value]);
  return {
    value,
    gradFunc: (dy, [vs, th]) => [tf.mul(dy, tf.mul(th, tf.cast(tf.less(vs, MAX_LOG_THETA), "float32")))],
  };
});
