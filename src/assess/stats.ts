/**
 * Small statistics used by the assessment: exact medians by quickselect, average (fractional) ranks,
 * the Mann–Whitney AUC, and fixed-range histograms (1-D and 2-D) that are filled pair by pair, so all
 * pairs never need to be held in memory.
 */

/**
 * Exact median of `values[0..len)` (average of the two middle values for an even count), by
 * Hoare's quickselect. **Reorders `values` in place.** NaNs must be removed by the caller.
 * @returns the median, or NaN when `len` is 0.
 */
export function medianInPlace(values: Float32Array | Float64Array, len = values.length): number {
  if (len === 0) return NaN;
  const mid = len >> 1;
  const hi = select(values, 0, len - 1, mid);
  if (len % 2 === 1) return hi;
  // lower middle = max of the left part (everything left of mid is ≤ values[mid])
  let lo = -Infinity;
  for (let i = 0; i < mid; i++) if (values[i] > lo) lo = values[i];
  return (lo + hi) / 2;
}

/** Median of a copy (the input is left untouched). */
export function median(values: ArrayLike<number>): number {
  return medianInPlace(Float64Array.from(values));
}

function select(a: Float32Array | Float64Array, left: number, right: number, k: number): number {
  while (right > left) {
    const pivot = a[(left + right) >> 1];
    let i = left;
    let j = right;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else return a[k];
  }
  return a[k];
}

/**
 * Ranks 1..n with ties given their average rank (as `scipy.stats.rankdata(method="average")`).
 * @returns float64 ranks in input order.
 */
export function averageRanks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const ranks = new Float64Array(n);
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && values[order[j + 1]] === values[order[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) ranks[order[t]] = r;
    i = j + 1;
  }
  return ranks;
}

/**
 * AUC of "a value from `small` is smaller than a value from `large`" (Mann–Whitney U / (n₁n₂), ties
 * count ½). 1 = perfect separation, 0.5 = none. Used with within-type (small) vs between-type (large)
 * distances.
 */
export function aucLess(small: ArrayLike<number>, large: ArrayLike<number>): number {
  const n1 = small.length;
  const n2 = large.length;
  if (n1 === 0 || n2 === 0) return NaN;
  const all = new Float64Array(n1 + n2);
  for (let i = 0; i < n1; i++) all[i] = small[i];
  for (let i = 0; i < n2; i++) all[n1 + i] = large[i];
  const r = averageRanks(all);
  let rs = 0;
  for (let i = 0; i < n1; i++) rs += r[i];
  // U for `small` being ranked lower: n1 n2 + n1(n1+1)/2 − R_small
  const u = n1 * n2 + (n1 * (n1 + 1)) / 2 - rs;
  return u / (n1 * n2);
}

/** A 1-D histogram over a fixed range [lo, hi] with `bins` equal bins; values outside are clamped. */
export class Histogram1D {
  readonly counts: Float64Array;
  constructor(readonly lo: number, readonly hi: number, readonly bins: number) {
    this.counts = new Float64Array(bins);
  }
  /** Bin index of v (clamped into range). */
  bin(v: number): number {
    const b = Math.floor(((v - this.lo) / (this.hi - this.lo)) * this.bins);
    return b < 0 ? 0 : b >= this.bins ? this.bins - 1 : b;
  }
  add(v: number, w = 1): void {
    if (Number.isFinite(v)) this.counts[this.bin(v)] += w;
  }
  get total(): number {
    let s = 0;
    for (const c of this.counts) s += c;
    return s;
  }
  /** Lower edge of bin b. */
  edge(b: number): number {
    return this.lo + ((this.hi - this.lo) * b) / this.bins;
  }
}

/** A 2-D histogram over fixed ranges, `bins × bins`, values clamped into range. */
export class Histogram2D {
  readonly counts: Float64Array;
  constructor(readonly xlo: number, readonly xhi: number, readonly ylo: number, readonly yhi: number, readonly bins: number) {
    this.counts = new Float64Array(bins * bins);
  }
  add(x: number, y: number): void {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    const n = this.bins;
    let bx = Math.floor(((x - this.xlo) / (this.xhi - this.xlo)) * n);
    let by = Math.floor(((y - this.ylo) / (this.yhi - this.ylo)) * n);
    bx = bx < 0 ? 0 : bx >= n ? n - 1 : bx;
    by = by < 0 ? 0 : by >= n ? n - 1 : by;
    this.counts[by * n + bx]++;
  }
}

/**
 * Approximate AUC of within (small) vs between (large) values from two histograms on the same bins:
 * P(within < between) + ½ P(same bin).
 */
export function histogramAuc(within: Histogram1D, between: Histogram1D): number {
  const nw = within.total;
  const nb = between.total;
  if (nw === 0 || nb === 0) return NaN;
  let acc = 0;
  let cumB = nb; // between values in bins strictly above the current
  for (let b = 0; b < within.bins; b++) {
    cumB -= between.counts[b];
    acc += within.counts[b] * (cumB + 0.5 * between.counts[b]);
  }
  return acc / (nw * nb);
}

/** Pearson correlation of two equal-length arrays (NaN when either is constant). */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i] - ma;
    const y = b[i] - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return sab / Math.sqrt(saa * sbb);
}
