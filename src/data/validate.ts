/**
 * Structural checks of a stored sparse matrix (CSR or CSC, as AnnData and scipy store them), run
 * while the matrix streams so a corrupt file is refused instead of misread: the pointer array
 * (`indptr`: length n + 1, starts at 0, never decreases, ends at the number of stored values) and
 * every stored index (`indices`: an integer in `[0, bound)`). Rows that repeat a column (a valid but
 * non-canonical CSR) are summed, as scipy's `csr_matrix.sum_duplicates` does.
 *
 * Source of the rules: scipy `sparse/_compressed.py` `check_format` (indptr and indices checks) and
 * `sum_duplicates`; the AnnData on-disk specification (anndata.readthedocs.io, "On-disk format").
 * Every error names the element (e.g. `X/indptr`) and the first bad position.
 */
import type { CsrChunk } from "./types.js";

/**
 * Check a compressed pointer array (`indptr`) of a matrix with `n` rows (CSR; columns for CSC)
 * and `nnz` stored values.
 * @param where file and element, e.g. `data.h5ad: X/indptr`.
 * @param axis what a row is, for the message ("cells" or "genes").
 * @throws Error naming `where` and the first bad position.
 */
export function checkIndptr(where: string, indptr: Float64Array, n: number, nnz: number, axis: string): void {
  if (indptr.length !== n + 1) {
    throw new Error(`${where} has ${indptr.length} entries but the matrix has ${n} ${axis} (shape attribute), so it needs ${n + 1}`);
  }
  if (indptr[0] !== 0) throw new Error(`${where}[0] is ${indptr[0]}, expected 0 (corrupt sparse matrix)`);
  for (let i = 1; i <= n; i++) {
    const a = indptr[i - 1];
    const b = indptr[i];
    if (!(b >= a) || !Number.isInteger(b)) {
      throw new Error(`${where} is not monotonic: ${where.split(": ").pop()}[${i}] = ${b} after ${a} (first bad index ${i}; corrupt sparse matrix)`);
    }
  }
  if (indptr[n] !== nnz) {
    throw new Error(`${where} ends at ${indptr[n]} but data and indices hold ${nnz} values (corrupt sparse matrix)`);
  }
}

/**
 * The stored indices `raw` (any integer typed array) of positions `offset …` as int32, each checked to
 * lie in `[0, bound)`.
 * @param where file and element, e.g. `data.h5ad: X/indices`.
 * @param axisName what the index counts, for the message (e.g. "gene (column)").
 * @throws Error naming `where`, the first bad position and its value.
 */
export function checkedIndices(where: string, raw: unknown, offset: number, bound: number, axisName: string): Int32Array {
  const fail = (k: number, v: number | bigint): never => {
    throw new Error(
      `${where}[${offset + k}] = ${v} is not a ${axisName} index in [0, ${bound}) (first bad index ${offset + k}; corrupt sparse matrix)`,
    );
  };
  if (raw instanceof Int32Array) {
    for (let k = 0; k < raw.length; k++) {
      const v = raw[k];
      if (v < 0 || v >= bound) fail(k, v);
    }
    return raw;
  }
  if (raw instanceof BigInt64Array || raw instanceof BigUint64Array) {
    const out = new Int32Array(raw.length);
    const b = BigInt(bound);
    for (let k = 0; k < raw.length; k++) {
      const v = raw[k];
      if (v < 0n || v >= b) fail(k, v);
      out[k] = Number(v);
    }
    return out;
  }
  if (ArrayBuffer.isView(raw) && !(raw instanceof DataView)) {
    const a = raw as unknown as ArrayLike<number>;
    const out = new Int32Array(a.length);
    for (let k = 0; k < a.length; k++) {
      const v = a[k];
      if (!(v >= 0 && v < bound) || !Number.isInteger(v)) fail(k, v);
      out[k] = v;
    }
    return out;
  }
  throw new Error(`${where}: not a numeric array`);
}

/**
 * The block in canonical form: within each row the columns strictly increase, a column stored
 * twice is summed (scipy `sum_duplicates`). A block that is canonical already (the common case) is
 * returned as is, after one pass over its indices.
 * @returns the canonical block and how many stored values were summed into another.
 */
export function canonicalRows(chunk: CsrChunk): { chunk: CsrChunk; summed: number } {
  const { indptr, indices, data } = chunk;
  let firstBad = -1;
  for (let r = 0; r < chunk.nCells && firstBad < 0; r++) {
    for (let k = indptr[r] + 1; k < indptr[r + 1]; k++) {
      if (indices[k] <= indices[k - 1]) {
        firstBad = r;
        break;
      }
    }
  }
  if (firstBad < 0) return { chunk, summed: 0 };
  const outIdx = new Int32Array(indices.length);
  const outVal = new Float64Array(data.length);
  const outPtr = new Float64Array(indptr.length);
  let w = 0;
  let summed = 0;
  for (let r = 0; r < chunk.nCells; r++) {
    const a = indptr[r];
    const b = indptr[r + 1];
    let sorted = true;
    for (let k = a + 1; k < b && sorted; k++) sorted = indices[k] > indices[k - 1];
    if (sorted) {
      outIdx.set(indices.subarray(a, b), w);
      outVal.set(data.subarray(a, b), w);
      w += b - a;
    } else {
      const order = Array.from({ length: b - a }, (_, i) => a + i).sort((x, y) => indices[x] - indices[y] || x - y);
      for (const k of order) {
        if (w > outPtr[r] && outIdx[w - 1] === indices[k]) {
          outVal[w - 1] += data[k];
          summed++;
        } else {
          outIdx[w] = indices[k];
          outVal[w++] = data[k];
        }
      }
    }
    outPtr[r + 1] = w;
  }
  return { chunk: { start: chunk.start, nCells: chunk.nCells, indptr: outPtr, indices: outIdx.subarray(0, w), data: outVal.subarray(0, w) }, summed };
}
