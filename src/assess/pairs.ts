/**
 * Within/between cell-type summaries over every pair of selected cells (the 2023 MIT 6.S898 study "Examining assumptions in scRNA-seq foundation model pre-training"; docs/assess.md): the median
 * of each measure within each type and between each pair of types, plus streamed 1-D and 2-D
 * histograms. Cells are grouped by type; the scan goes one type-pair block at a time (one matmul per
 * block and measure), so memory is O(cells per type²) per measure, never all pairs.
 */
import { PreparedRows, rowSqNorms } from "./linalg.js";
import { Histogram1D, Histogram2D, medianInPlace } from "./stats.js";

/** A pairwise measure as a distance (smaller = more alike). */
export interface PairMeasure {
  /** short id used in tables and metrics.json, e.g. "umap_hvg", "spearman". */
  id: string;
  /** human label for figures. */
  label: string;
  /**
   * Distances of rows `[r0, r1)` to rows `[c0, c1)`: `[r1 - r0, c1 - c0]` float32, written into `out`
   * (≥ (r1 − r0)(c1 − c0) values) when given. {@link scanPairs} asks for one type block × one type block.
   */
  block(r0: number, r1: number, c0: number, c1: number, out?: Float32Array): Float32Array;
  /** histogram range [0, max]. */
  max: number;
  /** release resources. */
  dispose?(): void;
}

/**
 * A measure described by its data, so that a worker thread can rebuild it (see parallel.ts):
 * `euclidean` on rows X `[n, d]`, or `spearman` on rank-standardised rows (see `rankStandardize`).
 */
export interface MeasureSpec {
  kind: "euclidean" | "spearman";
  id: string;
  label: string;
  x: Float32Array;
  n: number;
  d: number;
}

/** Build the {@link PairMeasure} a {@link MeasureSpec} describes. */
export function measureFromSpec(s: MeasureSpec): PairMeasure {
  return s.kind === "spearman" ? { ...spearmanMeasure(s.x, s.n, s.d), id: s.id, label: s.label } : euclideanMeasure(s.id, s.label, s.x, s.n, s.d);
}

/**
 * Rows X `[n, d]` prepared per column range: one {@link PreparedRows} per distinct `[c0, c1)` asked
 * for (the type blocks), so a block product never slices a copy of the whole transposed matrix.
 */
class ColumnRanges {
  private readonly prepared = new Map<string, PreparedRows>();
  constructor(readonly x: Float32Array, readonly n: number, readonly d: number) {}
  /** Inner products of rows `[r0, r1)` with rows `[c0, c1)` into `out`. */
  dots(r0: number, r1: number, c0: number, c1: number, out?: Float32Array): Float32Array {
    const key = `${c0}:${c1}`;
    let p = this.prepared.get(key);
    if (!p) this.prepared.set(key, (p = new PreparedRows(this.x.subarray(c0 * this.d, c1 * this.d), c1 - c0, this.d)));
    return p.dotsWith(this.x.subarray(r0 * this.d, r1 * this.d), r1 - r0, 0, c1 - c0, out);
  }
  dispose(): void {
    for (const p of this.prepared.values()) p.dispose();
    this.prepared.clear();
  }
}

/** Euclidean distance measure on X `[n, d]` (blocked tf matmuls: ‖x‖² + ‖y‖² − 2x·y, clamped at 0). */
export function euclideanMeasure(id: string, label: string, x: Float32Array, n: number, d: number): PairMeasure {
  const cols = new ColumnRanges(x, n, d);
  const sq = rowSqNorms(x, n, d);
  // upper bound of any distance: twice the largest distance to the centroid
  const c = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) c[j] += x[i * d + j] / n;
  let r = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += (x[i * d + j] - c[j]) ** 2;
    r = Math.max(r, s);
  }
  return {
    id,
    label,
    max: 2 * Math.sqrt(r) || 1,
    block(r0, r1, c0, c1, out) {
      const g = cols.dots(r0, r1, c0, c1, out);
      const nc = c1 - c0;
      for (let i = r0; i < r1; i++) {
        const oi = (i - r0) * nc - c0;
        const si = sq[i];
        for (let j = c0; j < c1; j++) {
          const v = si + sq[j] - 2 * g[oi + j];
          g[oi + j] = i === j || v <= 0 ? 0 : Math.sqrt(v);
        }
      }
      return g;
    },
    dispose: () => cols.dispose(),
  };
}

/** Spearman distance 1 − ρ from rank-standardised rows R `[n, p]` (see `rankStandardize`). */
export function spearmanMeasure(ranks: Float32Array, n: number, p: number): PairMeasure {
  const cols = new ColumnRanges(ranks, n, p);
  return {
    id: "spearman",
    label: "Spearman distance 1 − ρ (HVG)",
    max: 2,
    block(r0, r1, c0, c1, out) {
      const g = cols.dots(r0, r1, c0, c1, out);
      for (let t = 0; t < g.length; t++) g[t] = 1 - g[t];
      for (let i = Math.max(r0, c0); i < Math.min(r1, c1); i++) g[(i - r0) * (c1 - c0) + (i - c0)] = 0;
      return g;
    },
    dispose: () => cols.dispose(),
  };
}

/** A group of consecutive rows sharing a cell type. */
export interface TypeBlock {
  type: string;
  offset: number;
  size: number;
}

/** Result of {@link scanPairs}, per measure. */
export interface PairSummary {
  id: string;
  label: string;
  /** type → median over its distinct within-type pairs. */
  within: Map<string, number>;
  /** "a|b" (a < b in `types` order) → median over all a×b pairs. */
  between: Map<string, number>;
  /** pair-level histograms over [0, max]. */
  histWithin: Histogram1D;
  histBetween: Histogram1D;
  /** with `batches`: type → median over within-type pairs from the same batch (NaN if none). */
  withinSameBatch?: Map<string, number>;
  /** with `batches`: type → median over within-type pairs from different batches (NaN if none). */
  withinCrossBatch?: Map<string, number>;
}

/** Joint histogram of two measures over pairs. */
export interface JointHistogram {
  x: string;
  y: string;
  within: Histogram2D;
  between: Histogram2D;
}

/** Key of a type pair in {@link PairSummary.between}. */
export function pairKey(a: string, b: string): string {
  return `${a}|${b}`;
}

/** Options of {@link scanPairs}. */
export interface ScanOptions {
  /** 1-D histogram bins (default 400). */
  bins1d?: number;
  /** 2-D histogram bins per axis (default 60). */
  bins2d?: number;
  /** batch of each row: also split within-type pairs into same-batch and cross-batch medians. */
  batches?: readonly string[];
  /** progress: type-pair blocks done, of total. */
  onBlock?: (done: number, total: number) => void;
}

/**
 * Medians of one row type `bi` against every type `bj ≥ bi`, per measure: `medians[(bj − bi) · M + m]`;
 * with batches, the within-type same-batch / cross-batch medians per measure.
 */
export interface RowTypeResult {
  bi: number;
  medians: Float64Array;
  sameBatch?: Float64Array;
  crossBatch?: Float64Array;
}

/** Histogram counts of a scan (to be summed over workers): per measure within/between, per joint within/between. */
export interface ScanCounts {
  within1d: Float64Array[];
  between1d: Float64Array[];
  within2d: Float64Array[];
  between2d: Float64Array[];
}

/**
 * The work of {@link scanPairs}, one row type at a time, so that row types can be spread over worker
 * threads (parallel.ts): each scanner fills its own histograms, the caller sums their counts and
 * places the medians. Every median is computed from one type-pair block alone, so the result does not
 * depend on which scanner handled which row type.
 */
export class PairScanner {
  readonly counts: ScanCounts;
  private readonly bufs: Float32Array[];
  private readonly scratch: Float32Array;
  private readonly scratchSame: Float32Array;
  private readonly scratchCross: Float32Array;
  private readonly bcode?: Int32Array;
  private readonly jointIdx: [number, number][];
  private readonly b1: number;
  private readonly b2: number;

  constructor(
    readonly blocks: readonly TypeBlock[],
    readonly measures: readonly PairMeasure[],
    joints: readonly [string, string][],
    opts: { bins1d?: number; bins2d?: number; batchCodes?: Int32Array } = {},
  ) {
    this.b1 = opts.bins1d ?? 400;
    this.b2 = opts.bins2d ?? 60;
    const mi = new Map(measures.map((m, i) => [m.id, i]));
    this.jointIdx = joints.map(([x, y]) => {
      if (!mi.has(x) || !mi.has(y)) throw new Error(`scanPairs: unknown measure in joint ${x} × ${y}`);
      return [mi.get(x)!, mi.get(y)!];
    });
    const M = measures.length;
    this.counts = {
      within1d: Array.from({ length: M }, () => new Float64Array(this.b1)),
      between1d: Array.from({ length: M }, () => new Float64Array(this.b1)),
      within2d: joints.map(() => new Float64Array(this.b2 * this.b2)),
      between2d: joints.map(() => new Float64Array(this.b2 * this.b2)),
    };
    const maxSize = Math.max(...blocks.map((b) => b.size));
    this.bufs = measures.map(() => new Float32Array(maxSize * maxSize));
    this.scratch = new Float32Array(maxSize * maxSize);
    this.bcode = opts.batchCodes;
    this.scratchSame = this.bcode ? new Float32Array(maxSize * maxSize) : this.scratch;
    this.scratchCross = this.bcode ? new Float32Array(maxSize * maxSize) : this.scratch;
  }

  /** Scan row type `bi` against types `bi, bi+1, …` (pairs i < j within the type). */
  row(bi: number, onBlock?: () => void): RowTypeResult {
    const { blocks, measures, bcode } = this;
    const M = measures.length;
    const A = blocks[bi];
    const medians = new Float64Array((blocks.length - bi) * M);
    const sameBatch = bcode ? new Float64Array(M) : undefined;
    const crossBatch = bcode ? new Float64Array(M) : undefined;
    const scratch = this.scratch;
    for (let bj = bi; bj < blocks.length; bj++) {
      const B = blocks[bj];
      const same = bi === bj;
      const w = B.size;
      const vals = measures.map((m, k) => m.block(A.offset, A.offset + A.size, B.offset, B.offset + B.size, this.bufs[k]));
      for (let m = 0; m < M; m++) {
        const v = vals[m];
        const counts = same ? this.counts.within1d[m] : this.counts.between1d[m];
        // Histogram1D.add, inlined: bin = floor((x − lo) / (hi − lo) · bins), clamped; non-finite skipped
        const hi = measures[m].max;
        const nb = this.b1;
        let len = 0;
        for (let i = 0; i < A.size; i++) {
          const base = i * w;
          for (let j = same ? i + 1 : 0; j < w; j++) {
            const x = v[base + j];
            scratch[len++] = x;
            if (x - x === 0) {
              const b = Math.floor((x / hi) * nb);
              counts[b < 0 ? 0 : b >= nb ? nb - 1 : b]++;
            }
          }
        }
        if (same && bcode) {
          let ls = 0;
          let lc = 0;
          for (let i = 0; i < A.size; i++) {
            const base = i * w;
            const bi2 = bcode[A.offset + i];
            for (let j = i + 1; j < w; j++) {
              if (bcode[A.offset + j] === bi2) this.scratchSame[ls++] = v[base + j];
              else this.scratchCross[lc++] = v[base + j];
            }
          }
          sameBatch![m] = medianInPlace(this.scratchSame, ls);
          crossBatch![m] = medianInPlace(this.scratchCross, lc);
        }
        medians[(bj - bi) * M + m] = medianInPlace(scratch, len);
      }
      for (let t = 0; t < this.jointIdx.length; t++) {
        const [xi, yi] = this.jointIdx[t];
        const vx = vals[xi];
        const vy = vals[yi];
        const counts = same ? this.counts.within2d[t] : this.counts.between2d[t];
        // Histogram2D.add, inlined
        const n = this.b2;
        const sx = measures[xi].max;
        const sy = measures[yi].max;
        for (let i = 0; i < A.size; i++) {
          const base = i * w;
          for (let j = same ? i + 1 : 0; j < w; j++) {
            const x = vx[base + j];
            const y = vy[base + j];
            if (x - x !== 0 || y - y !== 0) continue;
            let bx = Math.floor((x / sx) * n);
            let by = Math.floor((y / sy) * n);
            bx = bx < 0 ? 0 : bx >= n ? n - 1 : bx;
            by = by < 0 ? 0 : by >= n ? n - 1 : by;
            counts[by * n + bx]++;
          }
        }
      }
      onBlock?.();
    }
    return { bi, medians, sameBatch, crossBatch };
  }
}

/** Integer code per distinct batch (in order of first appearance). */
export function batchCodes(batches: readonly string[]): Int32Array {
  const map = new Map<string, number>();
  return Int32Array.from(batches, (b) => {
    let c = map.get(b);
    if (c === undefined) map.set(b, (c = map.size));
    return c;
  });
}

/**
 * Put the row-type results and the summed histogram counts of one or more {@link PairScanner}s
 * together into {@link scanPairs}' result (maps filled in type order, whatever order rows came in).
 */
export function assembleScan(
  blocks: readonly TypeBlock[],
  measures: readonly { id: string; label: string; max: number }[],
  joints: readonly [string, string][],
  rows: readonly RowTypeResult[],
  counts: readonly ScanCounts[],
  opts: { bins1d?: number; bins2d?: number; batches?: boolean } = {},
): { summaries: PairSummary[]; joints: JointHistogram[] } {
  const b1 = opts.bins1d ?? 400;
  const b2 = opts.bins2d ?? 60;
  const M = measures.length;
  const byRow = new Map(rows.map((r) => [r.bi, r]));
  const sum = (parts: Float64Array[], into: Float64Array) => {
    for (const p of parts) for (let t = 0; t < p.length; t++) into[t] += p[t];
  };
  const summaries: PairSummary[] = measures.map((m, k) => {
    const s: PairSummary = {
      id: m.id,
      label: m.label,
      within: new Map(),
      between: new Map(),
      histWithin: new Histogram1D(0, m.max, b1),
      histBetween: new Histogram1D(0, m.max, b1),
      ...(opts.batches ? { withinSameBatch: new Map<string, number>(), withinCrossBatch: new Map<string, number>() } : {}),
    };
    sum(counts.map((c) => c.within1d[k]), s.histWithin.counts);
    sum(counts.map((c) => c.between1d[k]), s.histBetween.counts);
    return s;
  });
  for (let bi = 0; bi < blocks.length; bi++) {
    const r = byRow.get(bi);
    if (!r) throw new Error(`scanPairs: no result for type ${blocks[bi].type}`);
    for (let bj = bi; bj < blocks.length; bj++) {
      for (let m = 0; m < M; m++) {
        const v = r.medians[(bj - bi) * M + m];
        if (bj === bi) {
          summaries[m].within.set(blocks[bi].type, v);
          if (opts.batches) {
            summaries[m].withinSameBatch!.set(blocks[bi].type, r.sameBatch![m]);
            summaries[m].withinCrossBatch!.set(blocks[bi].type, r.crossBatch![m]);
          }
        } else summaries[m].between.set(pairKey(blocks[bi].type, blocks[bj].type), v);
      }
    }
  }
  const mi = new Map(measures.map((m, i) => [m.id, i]));
  const jh = joints.map(([x, y], t) => {
    const mx = measures[mi.get(x)!];
    const my = measures[mi.get(y)!];
    const within = new Histogram2D(0, mx.max, 0, my.max, b2);
    const between = new Histogram2D(0, mx.max, 0, my.max, b2);
    sum(counts.map((c) => c.within2d[t]), within.counts);
    sum(counts.map((c) => c.between2d[t]), between.counts);
    return { x, y, within, between };
  });
  return { summaries, joints: jh };
}

/**
 * Scan every pair of cells once (i < j), type block by type block, on this thread (see
 * `scanPairsParallel` in parallel.ts for worker threads: same result).
 * @param blocks type groups covering rows 0..n (consecutive).
 * @param measures the pairwise measures.
 * @param joints pairs of measure ids `[x, y]` to histogram jointly (within and between).
 * @returns per measure: exact within/between medians (quickselect per type-pair block) and pair
 *   histograms; the joint histograms.
 * @throws Error when a joint names an unknown measure.
 */
export function scanPairs(
  blocks: readonly TypeBlock[],
  measures: readonly PairMeasure[],
  joints: readonly [string, string][] = [],
  opts: ScanOptions = {},
): { summaries: PairSummary[]; joints: JointHistogram[] } {
  const scanner = new PairScanner(blocks, measures, joints, { ...opts, batchCodes: opts.batches ? batchCodes(opts.batches) : undefined });
  const total = (blocks.length * (blocks.length + 1)) / 2;
  let done = 0;
  const rows: RowTypeResult[] = [];
  for (let bi = 0; bi < blocks.length; bi++) rows.push(scanner.row(bi, () => opts.onBlock?.(++done, total)));
  return assembleScan(blocks, measures, joints, rows, [scanner.counts], { ...opts, batches: Boolean(opts.batches) });
}

/**
 * Median distance within each type and between each pair of types, over all cell pairs — the
 * study's per-type-pair summary, as a reusable function (e.g. for the demo on embeddings).
 * @param x rows `[n, d]` (Euclidean distances), or a distance function `dist(i, j)`.
 * @param labels type of each row.
 * @returns `within`: type → median; `between`: "a|b" (a < b alphabetically) → median.
 */
export function withinBetweenMedians(
  x: { data: Float32Array; d: number } | ((i: number, j: number) => number),
  labels: readonly string[],
): { within: Map<string, number>; between: Map<string, number> } {
  const n = labels.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (labels[a] < labels[b] ? -1 : labels[a] > labels[b] ? 1 : a - b));
  const blocks: TypeBlock[] = [];
  order.forEach((r, i) => {
    const t = labels[r];
    if (!blocks.length || blocks[blocks.length - 1].type !== t) blocks.push({ type: t, offset: i, size: 0 });
    blocks[blocks.length - 1].size++;
  });
  let measure: PairMeasure;
  if (typeof x === "function") {
    measure = {
      id: "d",
      label: "d",
      max: 1,
      block(r0, r1, c0, c1, buf) {
        const out = buf ? buf.subarray(0, (r1 - r0) * (c1 - c0)) : new Float32Array((r1 - r0) * (c1 - c0));
        for (let i = r0; i < r1; i++) for (let j = c0; j < c1; j++) out[(i - r0) * (c1 - c0) + j - c0] = x(order[i], order[j]);
        return out;
      },
    };
  } else {
    const d = x.d;
    const sorted = new Float32Array(n * d);
    order.forEach((r, i) => sorted.set(x.data.subarray(r * d, r * d + d), i * d));
    measure = euclideanMeasure("d", "d", sorted, n, d);
  }
  try {
    const { summaries } = scanPairs(blocks, [measure], [], { bins1d: 1 });
    return { within: summaries[0].within, between: summaries[0].between };
  } finally {
    measure.dispose?.();
  }
}
