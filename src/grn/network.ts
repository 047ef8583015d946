/**
 * Dense gene networks `[n, n]` (row = regulator, column = target; float32, row-major): filtering as
 * scPRINT's `GNInfer` (reference-spec §1d: "thresh" at 1/n_genes, "top-k" per row, "none"), scoring
 * against a ground truth (BEELINE EPR/AUPRC, BenGRN EPR) and the files `cellfm grn` writes.
 */
import { tableFromArrays, tableToIPC } from "../data/arrow.js";
import { writeFileAtomic } from "../io.js";
import { type AuprcResult, beelineAuprc, beelineEpr, beelineUniverse, type BeelineUniverse, bengrnEpr, type BengrnEprResult, type Edges, type EprResult } from "./metrics.js";
import type { IndexedTruth } from "./truth.js";

/** Network filter (`--filter`). */
export type NetworkFilter = { kind: "none" } | { kind: "thresh" } | { kind: "top-k"; k: number };

/** Parse `--filter`: `none`, `thresh` (entries below 1/n_genes set to 0), `top-k:K` (K largest per row). */
export function parseFilter(s: string): NetworkFilter {
  if (s === "none" || s === "thresh") return { kind: s };
  const m = /^top-k:(\d+)$/.exec(s);
  if (m && Number(m[1]) >= 1) return { kind: "top-k", k: Number(m[1]) };
  throw new Error(`--filter "${s}": expected none, thresh or top-k:K (K >= 1)`);
}

/**
 * Apply a filter and the optional regulator-row mask, in place.
 * - `thresh`: entries < 1/n set to 0 (1/n is the level of uniform attention);
 * - `top-k`: per row, all but the k largest entries set to 0 (ties to the lower column);
 * - `rows` (`--tf-only`): rows whose gene is not a known regulator set to 0.
 * @returns `g`.
 */
export function filterNetwork(g: Float32Array, n: number, f: NetworkFilter, rows?: Uint8Array): Float32Array {
  if (f.kind === "thresh") {
    const t = 1 / n;
    for (let i = 0; i < g.length; i++) if (g[i] < t) g[i] = 0;
  } else if (f.kind === "top-k" && f.k < n) {
    const idx = new Int32Array(n);
    for (let s = 0; s < n; s++) {
      const row = g.subarray(s * n, s * n + n);
      for (let t = 0; t < n; t++) idx[t] = t;
      idx.sort((a, b) => row[b] - row[a] || a - b);
      for (let r = f.k; r < n; r++) row[idx[r]] = 0;
    }
  }
  if (rows) for (let s = 0; s < n; s++) if (!rows[s]) g.fill(0, s * n, s * n + n);
  return g;
}

/** Scores of one network against the truth. */
export interface NetworkScores {
  /** BEELINE over all ordered pairs of the truth's genes. */
  beeline: { epr: EprResult; auprc: AuprcResult };
  /** BEELINE with `tf_edges`: rows of known regulators only (scPRINT's "TF rows"). */
  beelineTf: { epr: EprResult; auprc: AuprcResult };
  /** BenGRN's EPR on the network restricted to the list genes named anywhere in the truth file. */
  bengrn: BengrnEprResult | null;
}

/** The BEELINE universes and BenGRN truth matrix for one gene list, built once and reused per network. */
export interface ScoringPlan {
  n: number;
  all: BeelineUniverse;
  tf: BeelineUniverse;
  /** list genes named in the truth file (BenGRN's gene set). */
  bengrnGenes: number[];
  bengrnTruth: Uint8Array;
}

/**
 * Prepare scoring of networks over `truth.nGenes` genes.
 * @throws Error when the truth has no edge between two different genes of the list (nothing to score).
 */
export function scoringPlan(truth: IndexedTruth, file: string): ScoringPlan {
  const n = truth.nGenes;
  const all = beelineUniverse(truth.edges, n, false);
  if (all.trueKeys.size === 0) {
    throw new Error(`${file}: no edge of the ground truth joins two different genes of the chosen list (${n} genes); choose more genes or another truth file`);
  }
  const tf = beelineUniverse(truth.edges, n, true);
  const bg = truth.genesInFile;
  const pos = new Map(bg.map((g, i) => [g, i]));
  const m = bg.length;
  const bt = new Uint8Array(m * m);
  for (const [r, t] of truth.edges) bt[pos.get(r)! * m + pos.get(t)!] = 1;
  return { n, all, tf, bengrnGenes: bg, bengrnTruth: bt };
}

/**
 * Score a dense network. BEELINE scores use the network restricted to the truth's genes (BEELINE's
 * inputs cover the same genes as its ground truth; genes the truth never names could only add false
 * positives), so a random network scores 1.
 */
export function scoreNetwork(g: Float32Array, plan: ScoringPlan): NetworkScores {
  const e = nodeEdges(g, plan.n, plan.all.nodes);
  const beeline = { epr: beelineEpr(e, plan.all, { restrictToUniverse: true }), auprc: beelineAuprc(e, plan.all) };
  const beelineTf = { epr: beelineEpr(e, plan.tf), auprc: beelineAuprc(e, plan.tf) };
  const bg = plan.bengrnGenes, m = bg.length;
  let bengrn: BengrnEprResult | null = null;
  if (m >= 2) {
    const sub = new Float32Array(m * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) sub[i * m + j] = g[bg[i] * plan.n + bg[j]];
    bengrn = bengrnEpr(sub, plan.bengrnTruth, m);
  }
  return { beeline, beelineTf, bengrn };
}

/** Nonzero off-diagonal entries of `g` between two genes flagged in `nodes` (the truth's genes). */
export function nodeEdges(g: Float32Array, n: number, nodes: Uint8Array): Edges {
  const idx: number[] = [];
  for (let s = 0; s < n; s++) if (nodes[s]) idx.push(s);
  const src: number[] = [], tgt: number[] = [], w: number[] = [];
  for (const s of idx) {
    for (const t of idx) {
      const v = g[s * n + t];
      if (s === t || v === 0) continue;
      src.push(s);
      tgt.push(t);
      w.push(v);
    }
  }
  return { source: Int32Array.from(src), target: Int32Array.from(tgt), weight: Float64Array.from(w), unique: true };
}

/** Compact summary of {@link NetworkScores} for tables and grn.json. */
export function summarizeScores(s: NetworkScores): Record<string, number | null> {
  const f = (x: number) => (Number.isFinite(x) ? x : null);
  // a network with no nonzero entry in the universe has scikit-learn AUPRC (1 + |T|/|U|) / 2, which
  // reads as a large ratio: report it as undefined instead
  const a = (x: number, r: AuprcResult) => (r.nPredicted === 0 ? null : f(x));
  return {
    epr: f(s.beeline.epr.epr),
    auprc: a(s.beeline.auprc.auprc, s.beeline.auprc),
    auprc_ratio: a(s.beeline.auprc.ratio, s.beeline.auprc),
    epr_tf: f(s.beelineTf.epr.epr),
    auprc_tf: a(s.beelineTf.auprc.auprc, s.beelineTf.auprc),
    auprc_tf_ratio: a(s.beelineTf.auprc.ratio, s.beelineTf.auprc),
    n_predicted: s.beeline.auprc.nPredicted,
    bengrn_epr: s.bengrn ? f(s.bengrn.epr) : null,
    n_true: s.beeline.epr.nTrue,
    n_universe: s.beeline.epr.nUniverse,
    n_true_tf: s.beelineTf.epr.nTrue,
    n_universe_tf: s.beelineTf.epr.nUniverse,
  };
}

/**
 * Sorted edge list of a network: nonzero entries by weight descending, then regulator, target;
 * only the `maxEdges` largest (all entries tied with the last one included; 0 = all).
 */
export function sortedEdges(g: Float32Array, n: number, maxEdges = 0): { source: Int32Array; target: Int32Array; weight: Float32Array; nonzero: number } {
  let nonzero = 0;
  for (let i = 0; i < g.length; i++) if (g[i] !== 0) nonzero++;
  let cut = -Infinity;
  if (maxEdges > 0 && nonzero > maxEdges) {
    const v = new Float32Array(nonzero);
    let p = 0;
    for (let i = 0; i < g.length; i++) if (g[i] !== 0) v[p++] = g[i];
    v.sort();
    cut = v[nonzero - maxEdges];
  }
  const keep: number[] = [];
  for (let i = 0; i < g.length; i++) if (g[i] !== 0 && g[i] >= cut) keep.push(i);
  keep.sort((a, b) => g[b] - g[a] || a - b); // flat index order = regulator, then target
  return {
    source: Int32Array.from(keep, (i) => Math.floor(i / n)),
    target: Int32Array.from(keep, (i) => i % n),
    weight: Float32Array.from(keep, (i) => g[i]),
    nonzero,
  };
}

/**
 * Write `edges.tsv` (regulator, target, weight; gene names) and `edges.arrow` (regulator, target
 * as strings, regulator_id, target_id as Ensembl IDs, weight float32), sorted as {@link sortedEdges}.
 * @returns edges written and nonzero entries of the network.
 */
export function writeEdgeFiles(dir: string, g: Float32Array, names: readonly string[], ids: readonly string[], maxEdges = 0): { written: number; nonzero: number } {
  const n = names.length;
  const e = sortedEdges(g, n, maxEdges);
  const m = e.source.length;
  const chunks: string[] = ["regulator\ttarget\tweight\n"];
  let buf = "";
  for (let i = 0; i < m; i++) {
    buf += `${names[e.source[i]]}\t${names[e.target[i]]}\t${e.weight[i]}\n`;
    if (buf.length > 1 << 20) {
      chunks.push(buf);
      buf = "";
    }
  }
  chunks.push(buf);
  writeFileAtomic(`${dir}/edges.tsv`, chunks.join(""));
  const table = tableFromArrays({
    regulator: Array.from(e.source, (s) => names[s]),
    target: Array.from(e.target, (t) => names[t]),
    regulator_id: Array.from(e.source, (s) => ids[s]),
    target_id: Array.from(e.target, (t) => ids[t]),
    weight: e.weight,
  });
  writeFileAtomic(`${dir}/edges.arrow`, tableToIPC(table, "file"));
  return { written: m, nonzero: e.nonzero };
}

/** Write the dense matrix as TSV with gene names as header row and first column. */
export function writeDenseMatrix(file: string, g: Float32Array, names: readonly string[]): void {
  const n = names.length;
  const lines = ["gene\t" + names.join("\t")];
  for (let s = 0; s < n; s++) lines.push(names[s] + "\t" + Array.from(g.subarray(s * n, s * n + n)).join("\t"));
  writeFileAtomic(file, lines.join("\n") + "\n");
}

/** Throw when a network holds a non-finite value (a non-finite number is an error, never a result). */
export function assertFinite(g: Float32Array, what: string): void {
  for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) throw new Error(`${what}: non-finite network value at entry ${i}`);
}
