/**
 * The linear probe of `cellfm assess` / `cellfm compare` (issue 17 §4): a multinomial logistic
 * regression fitted on the embeddings of training cells and scored on held-out cells (accuracy and
 * macro-F1), the cheap, reproducible form of the cell-type classification that Geneformer, scGPT
 * and scPRINT report.
 *
 * The model is scikit-learn's default `LogisticRegression` (multinomial, L2, C = 1, lbfgs;
 * `sklearn/linear_model/_logistic.py`): it minimises
 *   Σ_i −log softmax(W·x_i + b)_{y_i} + ‖W‖² / (2C)        (the intercept is not penalised)
 * here on features standardised with the training cells' mean and standard deviation (sklearn's
 * `StandardScaler`, which the sklearn docs recommend before lbfgs; embeddings of different models
 * differ in scale). The optimiser is L-BFGS (Nocedal & Wright, Numerical Optimization, Alg. 7.4/7.5)
 * with a backtracking Armijo line search, deterministic (no random start: W = 0).
 * No maintained npm package fits: `ml-logistic-regression` is one-vs-rest plain gradient descent
 * with a fixed step and no penalty.
 */
import * as fs from "node:fs";

/** Options of {@link fitLogisticRegression}. */
export interface LogisticOptions {
  /** inverse L2 strength, as sklearn's C (default 1). */
  C?: number;
  /** L-BFGS iterations at most (default 500). */
  maxIter?: number;
  /** stop when the gradient's max-norm ≤ tol × max(1, n) (default 1e-6). */
  tol?: number;
  /** L-BFGS history (default 10). */
  memory?: number;
}

/** A fitted model: standardisation, weights `[d, K]` and biases `[K]` (float64). */
export interface LogisticModel {
  d: number;
  nClasses: number;
  mean: Float64Array;
  scale: Float64Array;
  W: Float64Array;
  b: Float64Array;
  /** L-BFGS iterations run, and whether the gradient tolerance was met. */
  iterations: number;
  converged: boolean;
}

/**
 * Objective (penalised NLL summed over cells) and its gradient at θ = [W (d × K, row-major), b (K)].
 * `z` holds the standardised features `[n, d]`.
 */
function objective(theta: Float64Array, z: Float64Array, y: Int32Array, n: number, d: number, K: number, C: number, grad: Float64Array): number {
  grad.fill(0);
  let f = 0;
  const logits = new Float64Array(K);
  for (let i = 0; i < n; i++) {
    const zi = i * d;
    for (let k = 0; k < K; k++) logits[k] = theta[d * K + k];
    for (let j = 0; j < d; j++) {
      const x = z[zi + j];
      if (x === 0) continue;
      const row = j * K;
      for (let k = 0; k < K; k++) logits[k] += x * theta[row + k];
    }
    let mx = -Infinity;
    for (let k = 0; k < K; k++) if (logits[k] > mx) mx = logits[k];
    let s = 0;
    for (let k = 0; k < K; k++) s += Math.exp(logits[k] - mx);
    const lse = mx + Math.log(s);
    f += lse - logits[y[i]];
    // dL/dlogit_k = p_k − [k = y]
    for (let k = 0; k < K; k++) logits[k] = Math.exp(logits[k] - lse) - (k === y[i] ? 1 : 0);
    for (let j = 0; j < d; j++) {
      const x = z[zi + j];
      if (x === 0) continue;
      const row = j * K;
      for (let k = 0; k < K; k++) grad[row + k] += x * logits[k];
    }
    for (let k = 0; k < K; k++) grad[d * K + k] += logits[k];
  }
  let pen = 0;
  for (let t = 0; t < d * K; t++) {
    pen += theta[t] * theta[t];
    grad[t] += theta[t] / C;
  }
  return f + pen / (2 * C);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function maxAbs(a: Float64Array): number {
  let m = 0;
  for (const v of a) if (Math.abs(v) > m) m = Math.abs(v);
  return m;
}

/**
 * Fit a multinomial L2 logistic regression (see the module comment).
 * @param x features `[n, d]` row-major
 * @param y class index of each row, in [0, nClasses)
 * @throws Error when n < 2, a label is outside [0, nClasses), or a feature is not finite.
 */
export function fitLogisticRegression(x: Float32Array | Float64Array, n: number, d: number, y: Int32Array, nClasses: number, opts: LogisticOptions = {}): LogisticModel {
  if (n < 2) throw new Error(`logistic regression: need at least 2 training rows, got ${n}`);
  if (x.length !== n * d || y.length !== n) throw new Error(`logistic regression: expected ${n} × ${d} features and ${n} labels, got ${x.length} values and ${y.length} labels`);
  for (const c of y) if (!(c >= 0 && c < nClasses)) throw new Error(`logistic regression: label ${c} outside [0, ${nClasses})`);
  const C = opts.C ?? 1, maxIter = opts.maxIter ?? 500, tol = opts.tol ?? 1e-6, M = opts.memory ?? 10;
  const K = nClasses;
  const mean = new Float64Array(d), scale = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) scale[j] += (x[i * d + j] - mean[j]) ** 2;
  for (let j = 0; j < d; j++) {
    const sd = Math.sqrt(scale[j] / n);
    scale[j] = sd > 1e-12 ? sd : 1; // a constant feature stays 0 after centring (sklearn: scale 1)
  }
  const z = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const v = (x[i * d + j] - mean[j]) / scale[j];
      if (!Number.isFinite(v)) throw new Error(`logistic regression: feature ${j} of row ${i} is not finite (${x[i * d + j]})`);
      z[i * d + j] = v;
    }
  }
  const P = d * K + K;
  let theta = new Float64Array(P);
  let g = new Float64Array(P);
  let f = objective(theta, z, y, n, d, K, C, g);
  const S: Float64Array[] = [], Yh: Float64Array[] = [], rho: number[] = [];
  let it = 0;
  let converged = maxAbs(g) <= tol * Math.max(1, n);
  const dir = new Float64Array(P);
  const alpha = new Array<number>(M);
  while (!converged && it < maxIter) {
    // two-loop recursion: dir = −H·g
    dir.set(g);
    for (let m = S.length - 1; m >= 0; m--) {
      alpha[m] = rho[m] * dot(S[m], dir);
      for (let t = 0; t < P; t++) dir[t] -= alpha[m] * Yh[m][t];
    }
    const gamma = S.length ? dot(S[S.length - 1], Yh[Yh.length - 1]) / dot(Yh[Yh.length - 1], Yh[Yh.length - 1]) : 1 / Math.max(1, maxAbs(g));
    for (let t = 0; t < P; t++) dir[t] *= gamma;
    for (let m = 0; m < S.length; m++) {
      const beta = rho[m] * dot(Yh[m], dir);
      for (let t = 0; t < P; t++) dir[t] += S[m][t] * (alpha[m] - beta);
    }
    for (let t = 0; t < P; t++) dir[t] = -dir[t];
    let slope = dot(g, dir);
    if (!(slope < 0)) {
      // not a descent direction (numerical): restart from steepest descent
      S.length = Yh.length = rho.length = 0;
      for (let t = 0; t < P; t++) dir[t] = -g[t] / Math.max(1, maxAbs(g));
      slope = dot(g, dir);
    }
    // backtracking Armijo line search
    let step = 1;
    const next = new Float64Array(P), gNext = new Float64Array(P);
    let fNext = Infinity;
    for (let ls = 0; ls < 40; ls++) {
      for (let t = 0; t < P; t++) next[t] = theta[t] + step * dir[t];
      fNext = objective(next, z, y, n, d, K, C, gNext);
      if (fNext <= f + 1e-4 * step * slope) break;
      step *= 0.5;
    }
    if (!(fNext < f) && !(fNext <= f + 1e-4 * step * slope)) break; // no progress possible at float precision
    const s = new Float64Array(P), yv = new Float64Array(P);
    for (let t = 0; t < P; t++) {
      s[t] = next[t] - theta[t];
      yv[t] = gNext[t] - g[t];
    }
    const sy = dot(s, yv);
    if (sy > 1e-12) {
      S.push(s);
      Yh.push(yv);
      rho.push(1 / sy);
      if (S.length > M) {
        S.shift();
        Yh.shift();
        rho.shift();
      }
    }
    const fPrev = f;
    theta = next;
    g = gNext;
    f = fNext;
    it++;
    converged = maxAbs(g) <= tol * Math.max(1, n);
    if (!converged && Math.abs(fPrev - f) <= 1e-12 * Math.max(1, Math.abs(f))) converged = true; // flat: as lbfgs' ftol
  }
  return { d, nClasses: K, mean, scale, W: theta.slice(0, d * K), b: theta.slice(d * K), iterations: it, converged };
}

/** Predicted class of each row of `x` `[n, d]` (argmax of the logits; ties → the lower class). */
export function predictLogistic(m: LogisticModel, x: Float32Array | Float64Array, n: number): Int32Array {
  const { d, nClasses: K } = m;
  if (x.length !== n * d) throw new Error(`logistic regression: expected ${n} × ${d} features, got ${x.length} values`);
  const out = new Int32Array(n);
  const logits = new Float64Array(K);
  for (let i = 0; i < n; i++) {
    logits.set(m.b);
    for (let j = 0; j < d; j++) {
      const v = (x[i * d + j] - m.mean[j]) / m.scale[j];
      for (let k = 0; k < K; k++) logits[k] += v * m.W[j * K + k];
    }
    let best = 0;
    for (let k = 1; k < K; k++) if (logits[k] > logits[best]) best = k;
    out[i] = best;
  }
  return out;
}

/**
 * Macro-averaged F1 over the classes present in `truth` (sklearn `f1_score(average="macro")` with
 * `labels` = the true classes; a class never predicted has F1 0).
 */
export function macroF1(truth: Int32Array, pred: Int32Array): number {
  const classes = [...new Set(truth)];
  let sum = 0;
  for (const c of classes) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < truth.length; i++) {
      if (pred[i] === c && truth[i] === c) tp++;
      else if (pred[i] === c) fp++;
      else if (truth[i] === c) fn++;
    }
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return classes.length ? sum / classes.length : NaN;
}

/** Result of {@link linearProbe} (metrics.json `probe`). */
export interface ProbeResult {
  /** held-out accuracy and macro-F1. */
  accuracy: number;
  macroF1: number;
  nTrain: number;
  nTest: number;
  iterations: number;
  converged: boolean;
}

/**
 * Fit on the rows with `isTest[i] === false`, score on the others.
 * @param x representation `[n, d]`; `labels` one per row
 * @throws Error when either side is empty or the training rows hold fewer than 2 classes.
 */
export function linearProbe(x: Float32Array, n: number, d: number, labels: readonly string[], isTest: readonly boolean[], opts: LogisticOptions = {}): ProbeResult {
  const classes = [...new Set(labels)].sort();
  const code = new Map(classes.map((c, i) => [c, i]));
  const tr: number[] = [], te: number[] = [];
  for (let i = 0; i < n; i++) (isTest[i] ? te : tr).push(i);
  if (tr.length === 0 || te.length === 0) throw new Error(`linear probe: needs training and held-out cells (got ${tr.length} and ${te.length})`);
  const take = (rows: number[]) => {
    const out = new Float32Array(rows.length * d);
    rows.forEach((r, i) => out.set(x.subarray(r * d, r * d + d), i * d));
    return out;
  };
  const ytr = Int32Array.from(tr, (i) => code.get(labels[i])!);
  if (new Set(ytr).size < 2) throw new Error("linear probe: the training cells hold fewer than 2 cell types");
  const model = fitLogisticRegression(take(tr), tr.length, d, ytr, classes.length, opts);
  const yte = Int32Array.from(te, (i) => code.get(labels[i])!);
  const pred = predictLogistic(model, take(te), te.length);
  let ok = 0;
  for (let i = 0; i < te.length; i++) if (pred[i] === yte[i]) ok++;
  return { accuracy: ok / te.length, macroF1: macroF1(yte, pred), nTrain: tr.length, nTest: te.length, iterations: model.iterations, converged: model.converged };
}

/** Which cells the probe fits on and scores: see {@link probeCells}. */
export interface ProbeCells {
  /** held-out cells of kept types outside the selection (data rows, ascending) and their labels. */
  extraRows: Int32Array;
  extraLabels: string[];
  /** per probe cell (the selection, then `extraRows`): true = scored, false = fitted on. */
  isTest: boolean[];
  /** how the split was made (report). */
  how: string;
}

/** Fraction of each type's selected cells held out when no held-out cells are given. */
export const PROBE_TEST_FRACTION = 0.2;

/**
 * The probe's cells. With `heldOut` (cell ids, e.g. a training run's validation cells): fitted on the
 * selected cells that are not held out, scored on every held-out cell of a kept type (selected or
 * not). Without: a seeded stratified split of the selection, {@link PROBE_TEST_FRACTION} of each type
 * held out.
 * @throws Error when `heldOut` leaves no cell on one side.
 */
export function probeCells(
  sel: { rows: Int32Array; labels: readonly string[]; kept: readonly { type: string }[] },
  allLabels: readonly string[],
  cellIds: readonly string[],
  heldOut: ReadonlySet<string> | undefined,
  rng: () => number,
): ProbeCells {
  const n = sel.rows.length;
  if (heldOut) {
    const kept = new Set(sel.kept.map((t) => t.type));
    const selected = new Set(sel.rows);
    const extra: number[] = [];
    for (let r = 0; r < cellIds.length; r++) if (!selected.has(r) && heldOut.has(cellIds[r]) && kept.has(allLabels[r])) extra.push(r);
    const isTest = [...Array.from(sel.rows, (r) => heldOut.has(cellIds[r])), ...extra.map(() => true)];
    const nTest = isTest.filter(Boolean).length;
    if (nTest === 0 || nTest === isTest.length) throw new Error(`linear probe: the held-out cells leave ${nTest === 0 ? "no cell to score" : "no selected cell to fit on"}`);
    return { extraRows: Int32Array.from(extra), extraLabels: extra.map((r) => allLabels[r]), isTest, how: `fitted on the selected cells outside the ${heldOut.size} held-out cells, scored on the held-out cells of the kept types` };
  }
  const isTest = new Array<boolean>(n).fill(false);
  const byType = new Map<string, number[]>();
  sel.labels.forEach((l, i) => (byType.get(l) ?? byType.set(l, []).get(l)!).push(i));
  for (const t of [...byType.keys()].sort()) {
    const idx = byType.get(t)!;
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    const k = Math.max(1, Math.round(idx.length * PROBE_TEST_FRACTION));
    for (const i of idx.slice(0, Math.min(k, idx.length - 1))) isTest[i] = true;
  }
  return { extraRows: new Int32Array(0), extraLabels: [], isTest, how: `a seeded stratified split of the selected cells, ${PROBE_TEST_FRACTION * 100} % of each type scored` };
}

/**
 * Cell ids from a text file, one per line (blank lines and surrounding spaces ignored).
 * @throws Error naming the file when it cannot be read or holds no id.
 */
export function readCellIdList(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`--held-out-cells ${file}: cannot read it (${(e as Error).message})`);
  }
  const ids = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  if (ids.length === 0) throw new Error(`--held-out-cells ${file}: no cell id in the file`);
  return ids;
}
