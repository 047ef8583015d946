/**
 * Spearman rank correlation between cells, the study's rank-value measure (the 2023 MIT 6.S898 study, measure 2; docs/assess.md):
 * each cell's expression vector over the HVGs is ranked (ties get their average rank, as
 * `scipy.stats.spearmanr`), centred and scaled to unit norm; then ρ(i, j) is the inner product of the
 * two standardised rank vectors, so all pairs come from blocked plain matrix products.
 */
import { averageRanks } from "./stats.js";

/**
 * Rank-standardise each row of X `[n, p]`: average ranks, minus their mean ((p+1)/2), divided by the
 * row's norm. A constant row (e.g. a cell with no counts on any HVG) has no defined correlation: it
 * becomes all zeros (so its ρ with every cell is 0) and is counted in `constantRows`.
 * Fast path for the many zeros of single-cell data: the z zeros of a row (when the row's values are
 * ≥ 0) all share rank (z + 1) / 2 and only the nonzeros are sorted.
 * @returns R `[n, p]` float32 with R_i · R_j = Spearman ρ(i, j).
 */
export function rankStandardize(x: Float32Array, n: number, p: number): { ranks: Float32Array; constantRows: number } {
  const out = new Float32Array(n * p);
  let constantRows = 0;
  const meanRank = (p + 1) / 2;
  const nzIdx = new Int32Array(p);
  const nzVal = new Float64Array(p);
  const r = new Float64Array(p);
  for (let i = 0; i < n; i++) {
    const row = x.subarray(i * p, i * p + p);
    let nz = 0;
    let negative = false;
    for (let j = 0; j < p; j++) {
      const v = row[j];
      if (v < 0) negative = true;
      if (v !== 0) {
        nzIdx[nz] = j;
        nzVal[nz++] = v;
      }
    }
    if (negative) {
      r.set(averageRanks(row));
    } else {
      const z = p - nz;
      r.fill((z + 1) / 2);
      const ranksNz = averageRanks(nzVal.subarray(0, nz));
      for (let t = 0; t < nz; t++) r[nzIdx[t]] = z + ranksNz[t];
    }
    let ss = 0;
    for (let j = 0; j < p; j++) {
      const c = r[j] - meanRank;
      r[j] = c;
      ss += c * c;
    }
    if (ss === 0) {
      constantRows++;
      continue;
    }
    const inv = 1 / Math.sqrt(ss);
    for (let j = 0; j < p; j++) out[i * p + j] = r[j] * inv;
  }
  return { ranks: out, constantRows };
}

/**
 * Spearman ρ of two vectors directly from the definition (Pearson correlation of average ranks);
 * the reference implementation the blocked version is tested against.
 */
export function spearmanDirect(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const ra = averageRanks(a);
  const rb = averageRanks(b);
  const n = a.length;
  const m = (n + 1) / 2;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (ra[i] - m) * (rb[i] - m);
    saa += (ra[i] - m) ** 2;
    sbb += (rb[i] - m) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
