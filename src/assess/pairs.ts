/**
 * Within/between cell-type summaries over every pair of selected cells (seed-study.md §1): the median
 * of each measure within each type and between each pair of types, plus streamed 1-D and 2-D
 * histograms. Cells are grouped by type; the scan goes one row-type at a time against all later cells,
 * so memory is O(cells per type × cells) per measure, never all pairs.
 */
import { PreparedRows } from "./linalg.js";
import { Histogram1D, Histogram2D, medianInPlace } from "./stats.js";

/** A pairwise measure as a distance (smaller = more alike). */
export interface PairMeasure {
  /** short id used in tables and metrics.json, e.g. "umap_hvg", "spearman". */
  id: string;
  /** human label for figures. */
  label: string;
  /** distances of rows `[r0, r1)` to rows `[c0, c1)`: `[r1 - r0, c1 - c0]` float32. */
  block(r0: number, r1: number, c0: number, c1: number): Float32Array;
  /** histogram range [0, max]. */
  max: number;
  /** release resources. */
  dispose?(): void;
}

/** Euclidean distance measure on X `[n, d]` (blocked tf matmuls). */
export function euclideanMeasure(id: string, label: string, x: Float32Array, n: number, d: number): PairMeasure {
  const prep = new PreparedRows(x, n, d);
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
    block(r0, r1, c0, c1) {
      const sq = prep.sqDists(r0, r1, c0, c1);
      for (let t = 0; t < sq.length; t++) sq[t] = Math.sqrt(sq[t]);
      return sq;
    },
    dispose: () => prep.dispose(),
  };
}

/** Spearman distance 1 − ρ from rank-standardised rows R `[n, p]` (see `rankStandardize`). */
export function spearmanMeasure(ranks: Float32Array, n: number, p: number): PairMeasure {
  const prep = new PreparedRows(ranks, n, p);
  return {
    id: "spearman",
    label: "Spearman distance 1 − ρ (HVG)",
    max: 2,
    block(r0, r1, c0, c1) {
      const g = prep.dots(r0, r1, c0, c1);
      for (let t = 0; t < g.length; t++) g[t] = 1 - g[t];
      for (let i = Math.max(r0, c0); i < Math.min(r1, c1); i++) g[(i - r0) * (c1 - c0) + (i - c0)] = 0;
      return g;
    },
    dispose: () => prep.dispose(),
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

/**
 * Scan every pair of cells once (i < j), type block by type block.
 * @param blocks type groups covering rows 0..n (consecutive).
 * @param measures the pairwise measures.
 * @param joints pairs of measure ids `[x, y]` to histogram jointly (within and between).
 * @param opts.bins histogram bins (1-D: `bins1d`, default 400; 2-D: `bins2d`, default 60).
 * @param opts.batches batch of each row: also split within-type pairs into same-batch and
 *   cross-batch medians.
 */
export function scanPairs(
  blocks: readonly TypeBlock[],
  measures: readonly PairMeasure[],
  joints: readonly [string, string][] = [],
  opts: { bins1d?: number; bins2d?: number; batches?: readonly string[]; onBlock?: (done: number, total: number) => void } = {},
): { summaries: PairSummary[]; joints: JointHistogram[] } {
  const n = blocks.reduce((s, b) => s + b.size, 0);
  const b1 = opts.bins1d ?? 400;
  const b2 = opts.bins2d ?? 60;
  const summaries: PairSummary[] = measures.map((m) => ({
    id: m.id,
    label: m.label,
    within: new Map(),
    between: new Map(),
    histWithin: new Histogram1D(0, m.max, b1),
    histBetween: new Histogram1D(0, m.max, b1),
    ...(opts.batches ? { withinSameBatch: new Map<string, number>(), withinCrossBatch: new Map<string, number>() } : {}),
  }));
  const bcode = opts.batches ? (() => {
    const map = new Map<string, number>();
    return Int32Array.from(opts.batches!, (b) => {
      let c = map.get(b);
      if (c === undefined) map.set(b, (c = map.size));
      return c;
    });
  })() : undefined;
  const mi = new Map(measures.map((m, i) => [m.id, i]));
  const jh = joints.map(([x, y]) => {
    const mx = measures[mi.get(x)!];
    const my = measures[mi.get(y)!];
    if (!mx || !my) throw new Error(`scanPairs: unknown measure in joint ${x} × ${y}`);
    return {
      x,
      y,
      xi: mi.get(x)!,
      yi: mi.get(y)!,
      within: new Histogram2D(0, mx.max, 0, my.max, b2),
      between: new Histogram2D(0, mx.max, 0, my.max, b2),
    };
  });
  const maxSize = Math.max(...blocks.map((b) => b.size));
  const scratch = new Float32Array(maxSize * maxSize);
  const scratchSame = bcode ? new Float32Array(maxSize * maxSize) : scratch;
  const scratchCross = bcode ? new Float32Array(maxSize * maxSize) : scratch;
  const totalPairsBlocks = (blocks.length * (blocks.length + 1)) / 2;
  let done = 0;
  for (let bi = 0; bi < blocks.length; bi++) {
    const A = blocks[bi];
    const r0 = A.offset;
    const r1 = A.offset + A.size;
    const c0 = A.offset;
    const width = n - c0;
    const rowsOf = measures.map((m) => m.block(r0, r1, c0, n));
    for (let bj = bi; bj < blocks.length; bj++) {
      const B = blocks[bj];
      const same = bi === bj;
      const cOff = B.offset - c0;
      for (let m = 0; m < measures.length; m++) {
        const v = rowsOf[m];
        const s = summaries[m];
        const h = same ? s.histWithin : s.histBetween;
        let len = 0;
        for (let i = 0; i < A.size; i++) {
          const base = i * width + cOff;
          for (let j = same ? i + 1 : 0; j < B.size; j++) {
            const x = v[base + j];
            scratch[len++] = x;
            h.add(x);
          }
        }
        if (same && bcode) {
          let ls = 0;
          let lc = 0;
          for (let i = 0; i < A.size; i++) {
            const base = i * width + cOff;
            const bi2 = bcode[r0 + i];
            for (let j = i + 1; j < B.size; j++) {
              if (bcode[r0 + j] === bi2) scratchSame[ls++] = v[base + j];
              else scratchCross[lc++] = v[base + j];
            }
          }
          s.withinSameBatch!.set(A.type, medianInPlace(scratchSame, ls));
          s.withinCrossBatch!.set(A.type, medianInPlace(scratchCross, lc));
        }
        const med = medianInPlace(scratch, len);
        if (same) s.within.set(A.type, med);
        else s.between.set(pairKey(A.type, B.type), med);
      }
      for (const j of jh) {
        const vx = rowsOf[j.xi];
        const vy = rowsOf[j.yi];
        const h = same ? j.within : j.between;
        for (let i = 0; i < A.size; i++) {
          const base = i * width + cOff;
          for (let t = same ? i + 1 : 0; t < B.size; t++) h.add(vx[base + t], vy[base + t]);
        }
      }
      opts.onBlock?.(++done, totalPairsBlocks);
    }
  }
  return { summaries, joints: jh.map(({ x, y, within, between }) => ({ x, y, within, between })) };
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
      block(r0, r1, c0, c1) {
        const out = new Float32Array((r1 - r0) * (c1 - c0));
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
