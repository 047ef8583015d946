/**
 * Dense linear algebra for the assessment: blocked matrix products (TensorFlow.js plain 2-D matmul when
 * a backend is active — the fast path on wasm, see design.md — else a typed-array loop), squared
 * Euclidean distance blocks, and PCA (covariance by blocked matmul, eigen-decomposition by ml-pca).
 *
 * All matrices are row-major `Float32Array`s with explicit shapes.
 */
import * as tf from "@tensorflow/tfjs-core";

/** True when a TensorFlow.js backend has been initialised (e.g. by `initBackend`). */
export function tfReady(): boolean {
  try {
    // `engine().backendName` is set once a backend is active; it never triggers initialisation.
    return Boolean((tf.engine() as unknown as { backendName?: string }).backendName);
  } catch {
    return false;
  }
}

/**
 * C = A · B with A `[m, k]`, B `[k, n]` (row-major float32). Uses one plain 2-D `tf.matMul` (no
 * transpose flags: ~35 GFLOP/s on wasm) when a tfjs backend is active, otherwise an i-k-j loop.
 * @returns C `[m, n]`, float32.
 */
export function matmul(a: Float32Array, m: number, k: number, b: Float32Array, n: number): Float32Array {
  if (a.length < m * k || b.length < k * n) throw new Error(`matmul: shapes [${m},${k}]·[${k},${n}] do not match the buffers`);
  if (tfReady() && m * n * k > 4096) {
    // (never return a TypedArray from tf.tidy: tidy walks its result element by element)
    const c = tf.tidy(() => tf.matMul(tf.tensor2d(a.subarray(0, m * k), [m, k]), tf.tensor2d(b.subarray(0, k * n), [k, n])));
    try {
      return readInto(c, new Float32Array(m * n));
    } finally {
      c.dispose();
    }
  }
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      if (av === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) c[ci + j] += av * b[bp + j];
    }
  }
  return c;
}

/**
 * Copy a float32 tensor's values into `out` (length = the tensor's size). On the wasm backend this
 * reads the backend's heap directly: `dataSync()` allocates a fresh ArrayBuffer per call, and for the
 * tens-of-MB distance blocks of the assessment that allocation cost ~4× the matmul itself (170 ms vs
 * 11 ms for a 40 MB block); other backends fall back to `dataSync()`.
 * @returns `out`.
 */
export function readInto(t: tf.Tensor, out: Float32Array): Float32Array {
  if (t.dtype !== "float32" || out.length !== t.size) throw new Error(`readInto: need a float32 buffer of ${t.size} values`);
  const be = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array }; dataIdMap?: { get(id: object): { memoryOffset?: number } | undefined } };
  const info = tf.getBackend() === "wasm" ? be.dataIdMap?.get(t.dataId) : undefined;
  const heap = be.wasm?.HEAPU8;
  if (heap && info && typeof info.memoryOffset === "number") out.set(new Float32Array(heap.buffer, heap.byteOffset + info.memoryOffset, t.size));
  else out.set(t.dataSync() as Float32Array);
  return out;
}

/** Transpose of `[rows, cols]` row-major → `[cols, rows]`. */
export function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const ri = i * cols;
    for (let j = 0; j < cols; j++) t[j * rows + i] = x[ri + j];
  }
  return t;
}

/** Squared L2 norm of each row of X `[n, d]`, float64. */
export function rowSqNorms(x: Float32Array, n: number, d: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const v = x[i * d + j];
      s += v * v;
    }
    out[i] = s;
  }
  return out;
}

/**
 * A matrix X `[n, d]` prepared for repeated distance/inner-product blocks against all its rows:
 * keeps X^T `[d, n]` (as a tfjs tensor when a backend is active) and the squared row norms.
 * Call {@link PreparedRows.dispose} when done.
 */
export class PreparedRows {
  readonly n: number;
  readonly d: number;
  readonly x: Float32Array;
  readonly sqNorms: Float64Array;
  private xt?: Float32Array;
  private xtTensor?: tf.Tensor2D;

  constructor(x: Float32Array, n: number, d: number) {
    if (x.length !== n * d) throw new Error(`PreparedRows: buffer has ${x.length} values, expected ${n}*${d}`);
    this.x = x;
    this.n = n;
    this.d = d;
    this.sqNorms = rowSqNorms(x, n, d);
    if (tfReady()) this.xtTensor = tf.tensor2d(transpose(x, n, d), [d, n]);
    else this.xt = transpose(x, n, d);
  }

  /**
   * Inner products of rows `[r0, r1)` with rows `[c0, c1)`.
   * @param out optional buffer of ≥ (r1 − r0)(c1 − c0) values to write into (reused across blocks:
   *   see {@link readInto}).
   * @returns `[r1 - r0, c1 - c0]` float32 (a view of `out` when given).
   */
  dots(r0: number, r1: number, c0 = 0, c1 = this.n, out?: Float32Array): Float32Array {
    return this.dotsWith(this.x.subarray(r0 * this.d, r1 * this.d), r1 - r0, c0, c1, out);
  }

  /**
   * Inner products of the rows of an outside matrix Q `[m, d]` with rows `[c0, c1)` of X.
   * @param out optional buffer of ≥ m (c1 − c0) values to write into.
   * @returns `[m, c1 - c0]` float32 (a view of `out` when given).
   */
  dotsWith(a: Float32Array, m: number, c0 = 0, c1 = this.n, out?: Float32Array): Float32Array {
    const nc = c1 - c0;
    if (out && out.length < m * nc) throw new Error(`dotsWith: output buffer has ${out.length} values, needs ${m * nc}`);
    if (this.xtTensor) {
      const t = this.xtTensor;
      const c = tf.tidy(() => {
        const ta = tf.tensor2d(a.subarray(0, m * this.d), [m, this.d]);
        const tb = c0 === 0 && c1 === this.n ? t : tf.slice(t, [0, c0], [this.d, nc]);
        return tf.matMul(ta, tb);
      });
      try {
        return readInto(c, out ? out.subarray(0, m * nc) : new Float32Array(m * nc));
      } finally {
        c.dispose();
      }
    }
    const xt = this.xt!;
    if (out) out.fill(0, 0, m * nc);
    out = out ? out.subarray(0, m * nc) : new Float32Array(m * nc);
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < this.d; p++) {
        const av = a[i * this.d + p];
        if (av === 0) continue;
        const base = p * this.n + c0;
        const oi = i * nc;
        for (let j = 0; j < nc; j++) out[oi + j] += av * xt[base + j];
      }
    }
    return out;
  }

  /**
   * Squared Euclidean distances of rows `[r0, r1)` to rows `[c0, c1)` (‖x‖² + ‖y‖² − 2x·y, clamped at 0;
   * exact 0 on the diagonal).
   * @param out optional buffer of ≥ (r1 − r0)(c1 − c0) values to write into.
   * @returns `[r1 - r0, c1 - c0]` float32 (a view of `out` when given).
   */
  sqDists(r0: number, r1: number, c0 = 0, c1 = this.n, out?: Float32Array): Float32Array {
    const g = this.dots(r0, r1, c0, c1, out);
    const nc = c1 - c0;
    const sq = this.sqNorms;
    for (let i = r0; i < r1; i++) {
      const oi = (i - r0) * nc;
      const si = sq[i];
      for (let j = c0; j < c1; j++) {
        const v = si + sq[j] - 2 * g[oi + j - c0];
        g[oi + j - c0] = i === j ? 0 : v > 0 ? v : 0;
      }
    }
    return g;
  }

  /** Release the tensor copy (no-op on the JS path). */
  dispose(): void {
    this.xtTensor?.dispose();
    this.xtTensor = undefined;
  }
}

/** Result of {@link pca}. */
export interface PcaResult {
  /** projected data `[n, nComponents]`, float32. */
  scores: Float32Array;
  nComponents: number;
  /** fraction of total variance explained by each kept component. */
  explainedVarianceRatio: number[];
  /** column means `[d]` and components `[d, nComponents]` (row-major), to project other rows ({@link projectPca}). */
  mean: Float64Array;
  components: Float32Array;
}

/**
 * Project rows `[n, d]` onto a fitted PCA (centred with its means): `[n, nComponents]`, as
 * sklearn's `PCA.transform`.
 * @throws Error when the width differs from the fitted data's.
 */
export function projectPca(p: PcaResult, x: Float32Array, n: number): Float32Array {
  const d = p.mean.length, k = p.nComponents;
  if (x.length !== n * d) throw new Error(`projectPca: expected ${n} × ${d} values, got ${x.length}`);
  if (n === 0) return new Float32Array(0);
  const xc = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) xc[i * d + j] = x[i * d + j] - p.mean[j];
  return matmul(xc, n, d, p.components, k);
}

/**
 * Eigen-decomposition of a small symmetric matrix `[m, m]` (float64, row-major) by cyclic Jacobi
 * rotations (Golub & Van Loan, Matrix Computations, §8.5).
 * @returns eigenvalues in decreasing order and the matching eigenvectors as columns of `[m, m]`.
 */
export function symmetricEigen(a: Float64Array, m: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(m * m);
  for (let i = 0; i < m; i++) V[i * m + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < m; i++) {
      diag += A[i * m + i] * A[i * m + i];
      for (let j = i + 1; j < m; j++) off += A[i * m + j] * A[i * m + j];
    }
    if (off <= 1e-30 * Math.max(diag, 1e-300)) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = A[p * m + q];
        if (apq === 0) continue;
        const app = A[p * m + p];
        const aqq = A[q * m + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = A[k * m + p];
          const akq = A[k * m + q];
          A[k * m + p] = c * akp - s * akq;
          A[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = A[p * m + k];
          const aqk = A[q * m + k];
          A[p * m + k] = c * apk - s * aqk;
          A[q * m + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < m; k++) {
          const vkp = V[k * m + p];
          const vkq = V[k * m + q];
          V[k * m + p] = c * vkp - s * vkq;
          V[k * m + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: m }, (_, i) => i).sort((x, y) => A[y * m + y] - A[x * m + x]);
  const values = new Float64Array(m);
  const vectors = new Float64Array(m * m);
  order.forEach((src, dst) => {
    values[dst] = A[src * m + src];
    for (let k = 0; k < m; k++) vectors[k * m + dst] = V[k * m + src];
  });
  return { values, vectors };
}

/** Orthonormalise the columns of Q `[d, m]` in place (modified Gram–Schmidt, applied twice). */
function orthonormalize(q: Float64Array, d: number, m: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 0; c < m; c++) {
      for (let p = 0; p < c; p++) {
        let dot = 0;
        for (let r = 0; r < d; r++) dot += q[r * m + c] * q[r * m + p];
        for (let r = 0; r < d; r++) q[r * m + c] -= dot * q[r * m + p];
      }
      let nrm = 0;
      for (let r = 0; r < d; r++) nrm += q[r * m + c] * q[r * m + c];
      nrm = Math.sqrt(nrm) || 1;
      for (let r = 0; r < d; r++) q[r * m + c] /= nrm;
    }
  }
}

/**
 * Principal component analysis of X `[n, d]` (centred, not scaled — as scanpy's `sc.pp.pca`),
 * keeping `nComponents` components.
 *
 * Method: covariance C `[d, d]` by blocked plain matmuls (float64 accumulation), then the top
 * eigenvectors of C by randomized subspace iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4:
 * oversampling 20, `iterations` power steps, re-orthonormalised each step) and a small Jacobi
 * eigen-solve of QᵀCQ. Cost O(n d²) + O(iterations d² (k+20)), so 44,500 × 2,435 takes seconds
 * (ml-pca's full ml-matrix EVD of a 2,435² covariance took minutes, which is why it is not used here).
 * With d ≤ nComponents + 20 the decomposition is exact (Jacobi on C itself).
 * Component signs: the largest-|loading| entry of each component is positive (deterministic).
 * @returns scores `[n, nComponents]` (float32) and the explained-variance ratios.
 * @throws Error when n < 2.
 */
export function pca(x: Float32Array, n: number, d: number, nComponents: number, opts: { iterations?: number; seed?: number } = {}): PcaResult {
  if (n < 2) throw new Error(`pca: need at least 2 rows, got ${n}`);
  const k = Math.max(1, Math.min(nComponents, d, n - 1));
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const cov = new Float64Array(d * d);
  const block = Math.max(1, Math.min(n, Math.floor(4_000_000 / Math.max(1, d))));
  for (let r0 = 0; r0 < n; r0 += block) {
    const r1 = Math.min(n, r0 + block);
    const m = r1 - r0;
    const xc = new Float32Array(m * d);
    for (let i = 0; i < m; i++) for (let j = 0; j < d; j++) xc[i * d + j] = x[(r0 + i) * d + j] - mean[j];
    const g = matmul(transpose(xc, m, d), d, m, xc, d);
    for (let t = 0; t < d * d; t++) cov[t] += g[t];
  }
  let trace = 0;
  for (let i = 0; i < d; i++) {
    for (let j = i; j < d; j++) {
      const v = (cov[i * d + j] + cov[j * d + i]) / 2 / (n - 1);
      cov[i * d + j] = v;
      cov[j * d + i] = v;
    }
    trace += cov[i * d + i];
  }
  let vecs: Float64Array; // [d, k] columns = components
  let vals: Float64Array;
  if (d <= k + 20) {
    const e = symmetricEigen(cov, d);
    vecs = new Float64Array(d * k);
    for (let r = 0; r < d; r++) for (let c = 0; c < k; c++) vecs[r * k + c] = e.vectors[r * d + c];
    vals = e.values.slice(0, k);
  } else {
    const m = Math.min(d, k + 20);
    // deterministic start: a seeded uniform matrix
    let state = (opts.seed ?? 0) * 2654435761 + 12345;
    const rand = () => ((state = (state * 1103515245 + 12345) >>> 0) / 4294967296) - 0.5;
    let q = new Float64Array(d * m);
    for (let t = 0; t < q.length; t++) q[t] = rand();
    orthonormalize(q, d, m);
    const cov32 = Float32Array.from(cov);
    for (let it = 0; it < (opts.iterations ?? 12); it++) {
      q = Float64Array.from(matmul(cov32, d, d, Float32Array.from(q), m));
      orthonormalize(q, d, m);
    }
    const cq = matmul(cov32, d, d, Float32Array.from(q), m); // [d, m]
    const small = new Float64Array(m * m);
    for (let a = 0; a < m; a++) {
      for (let b = 0; b < m; b++) {
        let s = 0;
        for (let r = 0; r < d; r++) s += q[r * m + a] * cq[r * m + b];
        small[a * m + b] = s;
      }
    }
    for (let a = 0; a < m; a++) for (let b = a + 1; b < m; b++) small[a * m + b] = small[b * m + a] = (small[a * m + b] + small[b * m + a]) / 2;
    const e = symmetricEigen(small, m);
    vecs = new Float64Array(d * k);
    for (let r = 0; r < d; r++) {
      for (let c = 0; c < k; c++) {
        let s = 0;
        for (let a = 0; a < m; a++) s += q[r * m + a] * e.vectors[a * m + c];
        vecs[r * k + c] = s;
      }
    }
    vals = e.values.slice(0, k);
  }
  const w = new Float32Array(d * k);
  for (let c = 0; c < k; c++) {
    let best = 0;
    for (let j = 0; j < d; j++) if (Math.abs(vecs[j * k + c]) > Math.abs(vecs[best * k + c])) best = j;
    const sign = vecs[best * k + c] < 0 ? -1 : 1;
    for (let j = 0; j < d; j++) w[j * k + c] = sign * vecs[j * k + c];
  }
  const scores = new Float32Array(n * k);
  for (let r0 = 0; r0 < n; r0 += block) {
    const r1 = Math.min(n, r0 + block);
    const m = r1 - r0;
    const xc = new Float32Array(m * d);
    for (let i = 0; i < m; i++) for (let j = 0; j < d; j++) xc[i * d + j] = x[(r0 + i) * d + j] - mean[j];
    scores.set(matmul(xc, m, d, w, k), r0 * k);
  }
  const total = trace > 0 ? trace : 1;
  return { scores, nComponents: k, explainedVarianceRatio: Array.from(vals, (v) => Math.max(0, v) / total), mean, components: w };
}
