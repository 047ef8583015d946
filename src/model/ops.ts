/**
 * Tensor operations written so that the slow paths of `@tensorflow/tfjs-backend-wasm` 4.22 are
 * never hit (design notes, "TensorFlow.js backends: measured facts"):
 *
 * - wasm matmul is fast (XNNPACK, ~35–40 GFLOP/s) only for 2-D operands without transpose flags;
 *   tfjs' own matmul gradient uses transpose flags (~3 GFLOP/s). {@link matmul2d} and {@link linear}
 *   are `tf.customGrad` wrappers whose backward passes also issue only plain 2-D matmuls, with
 *   explicit `tf.transpose` first.
 * - wasm has no `UnsortedSegmentSum`, so the gradient of `tf.gather` throws; {@link gatherRows} uses
 *   `tf.scatterND` (which sums duplicate indices) in its backward pass.
 * - tfjs has no sparse softmax cross-entropy; {@link sparseSoftmaxCrossEntropy} computes it with an
 *   analytic gradient `(softmax − onehot) / n`.
 *
 * The same ops run unchanged on the cpu and tensorflow (tfjs-node) backends. Shapes in TSDoc:
 * `[rows, in]` etc.; all float tensors are float32.
 */
import * as tf from "@tensorflow/tfjs-core";
import { blasStatus, LAYER_NORM, MASKED_SOFTMAX } from "../blas.js";
// tfjs-core alone registers no gradients: ./gradients.ts registers the ones the model needs.
import "./gradients.js";

/** Activation names shared with `BertConfig.hidden_act`. */
export type Activation = "relu" | "gelu" | "linear";

type CustomFwd = (
  inputs: tf.Tensor[],
  save: tf.GradSaveFunc,
) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] };

/** `tf.customGrad` over `n` tensor inputs with a typed forward function. */
export function custom(n: number, fwd: CustomFwd): (...args: tf.Tensor[]) => tf.Tensor {
  const f = (...args: unknown[]) => fwd(args.slice(0, n) as tf.Tensor[], args[n] as tf.GradSaveFunc);
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]);
}

/**
 * `a @ b` for 2-D float32 tensors, forward and backward as plain (untransposed) 2-D matmuls.
 * @param a `[m, k]`
 * @param b `[k, n]`
 * @returns `[m, n]`
 */
export function matmul2d(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const f = custom(2, ([x, y], save) => {
    save([x, y]);
    return {
      value: tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ys] = saved as tf.Tensor2D[];
        return [mm(dy as tf.Tensor2D, ys, false, true), mm(xs, dy as tf.Tensor2D, true, false)];
      },
    };
  });
  return f(a, b) as tf.Tensor2D;
}

/**
 * True when the matmuls run on the native BLAS kernels (`src/blas.ts`): there transposed operands
 * and batches cost nothing extra, so {@link mm} and {@link bmm} pass them to one kernel call.
 */
export function nativeMatmul(): boolean {
  return onWasm() && blasStatus().active;
}

/**
 * `softmax(s + maskBias)` over the last axis, without a tape entry (for use inside custom ops). On the
 * native kernels one pass ({@link MASKED_SOFTMAX}); elsewhere a broadcast add, then `tf.softmax`.
 * @param s scores `[batch, heads, L, L]`
 * @param maskBias `[batch, 1, 1, L]` additive bias (0 real, −1e9 padding)
 * @returns probabilities, the shape of `s`
 */
export function maskedSoftmax(s: tf.Tensor4D, maskBias: tf.Tensor4D): tf.Tensor4D {
  if (nativeMatmul()) return tf.engine().runKernel(MASKED_SOFTMAX, { x: s, bias: maskBias }, {}) as tf.Tensor4D;
  return tf.softmax(tf.add(s, maskBias)) as tf.Tensor4D;
}

/**
 * `op(a) @ op(b)` without a tape entry (for use inside custom gradients), 2-D or batched 3-D, op =
 * transpose of the last two axes where flagged. On the native BLAS one kernel call with transpose
 * flags; otherwise explicit `tf.transpose` first and plain matmuls ({@link bmm} for 3-D), the fast
 * path of the wasm kernels (see the header), with the same numbers as before the native kernels.
 * @param a `[m, k]` (`[k, m]` when `ta`), or with a leading batch axis
 * @param b `[k, n]` (`[n, k]` when `tb`), or with the same leading batch axis
 * @returns `[m, n]` (or `[batch, m, n]`)
 */
export function mm<T extends tf.Tensor2D | tf.Tensor3D>(a: T, b: T, ta = false, tb = false): T {
  if (nativeMatmul()) return tf.matMul(a, b, ta, tb) as T;
  if (a.rank === 3) {
    const a3 = a as tf.Tensor3D, b3 = b as tf.Tensor3D;
    return bmm(ta ? t3(a3) : a3, tb ? t3(b3) : b3) as T;
  }
  return tf.matMul(ta ? tf.transpose(a as tf.Tensor2D) : a, tb ? tf.transpose(b as tf.Tensor2D) : b) as T;
}

/** True when the active backend is tfjs-backend-wasm (whose slicing kernels are slow, see {@link bmm}). */
export function onWasm(): boolean {
  return tf.getBackend() === "wasm";
}

/**
 * Batched matmul without a tape entry (for use inside custom gradients): `x[i] @ y[i]`.
 * On wasm it runs n plain 2-D matmuls (the fast XNNPACK path) on slices cut from one host copy of
 * each operand: wasm's `Slice`/`Unpack` copy the whole input to JS once per slice and its `Gather`
 * is element-wise (~25 ms per MB), both far slower. Elsewhere it is one batched `tf.matMul`.
 * @param x `[n, m, k]`
 * @param y `[n, k, p]`
 * @returns `[n, m, p]`
 */
export function bmm(x: tf.Tensor3D, y: tf.Tensor3D): tf.Tensor3D {
  const [n, m, k] = x.shape;
  const p = y.shape[2];
  if (y.shape[0] !== n || y.shape[1] !== k) throw new Error(`bmm: shapes [${x.shape}] and [${y.shape}] do not match`);
  if (!onWasm() || nativeMatmul()) return tf.matMul(x, y);
  return tf.tidy(() => {
    const xd = hostCopy(x, 0), yd = hostCopy(y, 1);
    const outs: tf.Tensor2D[] = [];
    for (let i = 0; i < n; i++) {
      const xi = tf.tensor2d(xd.subarray(i * m * k, (i + 1) * m * k), [m, k]);
      const yi = tf.tensor2d(yd.subarray(i * k * p, (i + 1) * k * p), [k, p]);
      outs.push(tf.matMul(xi, yi));
    }
    return tf.stack(outs) as tf.Tensor3D;
  });
}

/** Reusable host buffers (fresh multi-MB allocations cost page faults: ~5 ms per MB measured here). */
const scratch: Float32Array[] = [];

function scratchBuf(slot: number, size: number): Float32Array {
  let b = scratch[slot];
  if (!b || b.length < size) scratch[slot] = b = new Float32Array(Math.ceil(Math.max(size, (b?.length ?? 0) * 1.25)));
  return b.subarray(0, size);
}

/**
 * Copy a float32 tensor into reusable host scratch slot `slot` (wasm only: `tf.tensor(values)`
 * copies `values` into the wasm heap at once, so the buffer can be reused right after).
 */
function hostCopy(x: tf.Tensor, slot: number): Float32Array {
  const out = scratchBuf(slot, x.size);
  const be = tf.backend() as unknown as { typedArrayFromHeap?: (t: tf.Tensor) => Float32Array };
  out.set(typeof be.typedArrayFromHeap === "function" ? be.typedArrayFromHeap(x) : (x.dataSync() as Float32Array));
  return out;
}

/** Swap the last two axes of a 3-D tensor. */
export function t3(x: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(x, [0, 2, 1]);
}

/**
 * Batched matmul `a[i] @ b[i]` with a custom gradient whose backward also uses {@link bmm}.
 * @param a `[n, m, k]`
 * @param b `[n, k, p]`
 * @returns `[n, m, p]`
 */
export function batchMatmul(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  const f = custom(2, ([x, y], save) => {
    save([x, y]);
    return {
      value: bmm(x as tf.Tensor3D, y as tf.Tensor3D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ys] = saved as tf.Tensor3D[];
        return [mm(dy as tf.Tensor3D, ys, false, true), mm(xs, dy as tf.Tensor3D, true, false)];
      },
    };
  });
  return f(a, b) as tf.Tensor3D;
}

/**
 * Inverted-dropout multiplier `[size]`: 0 with probability `rate`, else `1/(1−rate)`, drawn in JS
 * from a small seeded generator (mulberry32), so it is identical on every backend and can be
 * regenerated in a backward pass instead of being stored. Dropped positions are found by geometric
 * skips (gap ~ Geometric(rate)), so only ≈ rate·size random numbers are drawn; each element is still
 * dropped independently with probability `rate`.
 */
export function dropoutMultiplier(size: number, rate: number, seed: number, into?: Float32Array): Float32Array {
  const out = (into ?? new Float32Array(size)).fill(1 / (1 - rate));
  if (rate <= 0) return out;
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296; // (0, 1)
  };
  const logKeep = Math.log1p(-rate);
  for (let i = -1; ; ) {
    i += 1 + Math.floor(Math.log(next()) / logKeep);
    if (i >= size) break;
    out[i] = 0;
  }
  return out;
}

/** Dropout multiplier as a float32 tensor of `shape` (see {@link dropoutMultiplier}). */
export function dropoutMask(shape: number[], rate: number, seed: number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const buf = onWasm() ? scratchBuf(2, size) : new Float32Array(size);
  return tf.tensor(dropoutMultiplier(size, rate, seed, buf), shape, "float32");
}

/**
 * Multi-head scaled dot-product attention as one op (HF `BertSelfAttention` after the projections):
 * `ctx = dropout(softmax(q·kᵀ + maskBias)) · v` per (cell, head), with an analytic backward pass
 * that keeps only q, kᵀ, v and the softmax output (the dropout mask is regenerated from its seed).
 * Matmuls go through {@link bmm}.
 * @param q `[batch*heads, seqLen, headDim]`, already scaled by `1/sqrt(headDim)`
 * @param kT `[batch*heads, headDim, seqLen]`
 * @param v `[batch*heads, seqLen, headDim]`
 * @param maskBias `[batch, 1, 1, seqLen]` additive bias (0 real, −1e9 padding)
 * @param dropout attention-probability dropout (`rate`, `seed`), or null
 * @returns context `[batch*heads, seqLen, headDim]`
 */
export function attention(
  q: tf.Tensor3D,
  kT: tf.Tensor3D,
  v: tf.Tensor3D,
  maskBias: tf.Tensor4D,
  dropout: { rate: number; seed: number } | null,
): tf.Tensor3D {
  const [n, L] = q.shape;
  const B = maskBias.shape[0];
  const NH = n / B;
  const mult = () => (dropout ? dropoutMask([n, L, L], dropout.rate, dropout.seed) : null);
  const f = custom(4, ([qi, ki, vi, mi], save) => {
    const s = bmm(qi as tf.Tensor3D, ki as tf.Tensor3D);
    const p = tf.reshape(maskedSoftmax(tf.reshape(s, [B, NH, L, L]) as tf.Tensor4D, mi as tf.Tensor4D), [n, L, L]) as tf.Tensor3D;
    const mk = mult();
    const pd = mk ? tf.mul(p, mk) : p;
    save([qi, ki, vi, mi, p]);
    return {
      value: bmm(pd as tf.Tensor3D, vi as tf.Tensor3D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, ks, vs, ms, ps] = saved as tf.Tensor3D[];
        const m2 = mult();
        const pd2 = (m2 ? tf.mul(ps, m2) : ps) as tf.Tensor3D;
        const dv = bmm(t3(pd2), dy as tf.Tensor3D);
        let dp = bmm(dy as tf.Tensor3D, t3(vs));
        if (m2) dp = tf.mul(dp, m2);
        const ds = tf.mul(ps, tf.sub(dp, tf.sum(tf.mul(dp, ps), -1, true))) as tf.Tensor3D;
        return [bmm(ds, t3(ks)), bmm(t3(qs), ds), dv, tf.zerosLike(ms)];
      },
    };
  });
  return f(q, kT, v, maskBias) as tf.Tensor3D;
}

/**
 * Decoder tied to an embedding table: `h @ tableᵀ + bias` (HF `BertLMPredictionHead.decoder`).
 * Forward transposes the table once; backward is `dh = dy @ table` (no transpose) and
 * `dtable = (hᵀ @ dy)ᵀ`, two plain 2-D matmuls.
 * @param h `[rows, hidden]`
 * @param table `[vocab, hidden]`
 * @param bias `[vocab]`
 * @returns logits `[rows, vocab]`
 */
export function tiedDecoder(h: tf.Tensor2D, table: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  const f = custom(3, ([hi, ti, bi], save) => {
    save([hi, ti]);
    return {
      value: nativeMatmul()
        ? tf.fused.matMul({ a: hi as tf.Tensor2D, b: ti as tf.Tensor2D, transposeB: true, bias: bi })
        : tf.fused.matMul({ a: hi as tf.Tensor2D, b: tf.transpose(ti as tf.Tensor2D), bias: bi }),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [hs, ts] = saved as tf.Tensor2D[];
        const d = dy as tf.Tensor2D;
        const dT = nativeMatmul() ? mm(d, hs, true, false) : tf.transpose(tf.matMul(tf.transpose(hs), d));
        return [tf.matMul(d, ts), dT, colSum(d)];
      },
    };
  });
  return f(h, table, bias) as tf.Tensor2D;
}

/**
 * Dense layer `act(x @ w + b)` with weights stored `[in, out]`: one fused matmul+bias(+ReLU) kernel
 * forward; backward only plain 2-D matmuls plus a column sum for the bias.
 * GELU is applied outside the custom op (exact erf form, as HF `ACT2FN["gelu"]`).
 * @param x `[rows, in]`
 * @param w `[in, out]`
 * @param b `[out]`
 * @returns `[rows, out]`
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, act: Activation = "linear"): tf.Tensor2D {
  const relu = act === "relu";
  const f = custom(3, ([xi, wi, bi], save) => {
    const y = tf.fused.matMul({
      a: xi as tf.Tensor2D,
      b: wi as tf.Tensor2D,
      bias: bi,
      activation: relu ? "relu" : "linear",
    });
    save(relu ? [xi, wi, y] : [xi, wi]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, ys] = saved as tf.Tensor2D[];
        const dz = (relu ? tf.mul(dy, tf.step(ys)) : dy) as tf.Tensor2D;
        return [mm(dz, ws, false, true), mm(xs, dz, true, false), colSum(dz)];
      },
    };
  });
  const y = f(x, w, b) as tf.Tensor2D;
  return act === "gelu" ? gelu(y) : y;
}

/** Exact GELU `0.5·x·(1 + erf(x/√2))` (HF `GELUActivation`). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1))) as T;
}

/**
 * Rows of `table` at `idx` (`tf.gather` along axis 0) with a gradient that works on every backend:
 * the backward pass scatters `dy` back with `tf.scatterND`, which sums duplicate indices.
 * @param table `[n, d]` float32
 * @param idx `[m]` int32, values in `[0, n)`
 * @returns `[m, d]`
 */
export function gatherRows(table: tf.Tensor2D, idx: tf.Tensor1D): tf.Tensor2D {
  const shape = table.shape;
  const f = custom(2, ([t, i], save) => {
    save([i]); // idx is an input and saved: tensors made inside the tape are gone by the backward pass
    return {
      value: tf.gather(t, i as tf.Tensor1D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        tf.scatterND(tf.expandDims(saved[0], 1), dy, shape),
        tf.zerosLike(saved[0]),
      ],
    };
  });
  return f(table, idx) as tf.Tensor2D;
}

/**
 * LayerNorm over the last axis: `(x − mean) / sqrt(var + eps) · gamma + beta` (biased variance, as
 * `torch.nn.LayerNorm`), differentiable. On the native kernels one fused pass forward
 * ({@link layerNormFwd}) and {@link layerNormBwd} backward; elsewhere composed of tfjs ops (tape gradients).
 * @param x `[rows, h]`
 */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  if (nativeMatmul()) {
    const f = custom(3, ([xi, g, b], save) => {
      const r = layerNormFwd(xi as tf.Tensor2D, g, b, eps);
      save([r.xhat, r.rstd, g]);
      return {
        value: r.y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xhat, rstd, gs] = saved as tf.Tensor2D[];
          const d = layerNormBwd(dy as tf.Tensor2D, xhat, rstd, gs);
          return [d.dx, d.dgamma, d.dbeta];
        },
      };
    });
    return f(x, gamma, beta) as tf.Tensor2D;
  }
  return tf.tidy(() => {
    const mu = tf.mean(x, -1, true);
    const xc = tf.sub(x, mu);
    const inv = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    return tf.add(tf.mul(tf.mul(xc, inv), gamma), beta) as tf.Tensor2D;
  });
}

/** float32 one-hot rows `[n, depth]` (wasm 4.22's OneHot writes wrong bits for dtype float32: cast instead). */
function oneHotF32(labels: tf.Tensor1D, depth: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(labels, depth), "float32")) as tf.Tensor2D;
}

/**
 * Mean cross-entropy of integer labels under softmax(logits), with the analytic gradient
 * `(softmax(logits) − onehot(labels)) / n` (no `[n, vocab]` log-softmax graph kept for backward).
 * @param logits `[n, vocab]` float32
 * @param labels `[n]` int32 in `[0, vocab)`
 * @returns scalar mean over the n rows (natural log units, nats)
 */
export function sparseSoftmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const [n, vocab] = logits.shape;
  const f = custom(2, ([lg, lab], save) => {
    // one native softmax pass (wasm's Exp is ~3x slower than its Softmax kernel); probabilities are
    // saved for the backward pass instead of being recomputed.
    const p = tf.softmax(lg) as tf.Tensor2D;
    // row i's label in the flattened probabilities, computed on the device (no read: webgpu has no sync read)
    const flatIdx = tf.add(tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(vocab, "int32")), lab) as tf.Tensor1D;
    const picked = tf.gather(tf.reshape(p, [n * vocab]), flatIdx);
    // −log p[label], with p floored at 1e-30 (a loss of at most 69 nats per token, never Infinity)
    const loss = tf.div(tf.sum(tf.neg(tf.log(tf.maximum(picked, 1e-30)))), n) as tf.Scalar;
    save([p, lab]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ps, labs] = saved;
        const s = tf.div(dy, n);
        const oh = oneHotF32(labs as tf.Tensor1D, vocab);
        return [tf.mul(tf.sub(ps, oh), s), tf.zerosLike(labs)];
      },
    };
  });
  return f(logits, labels) as tf.Scalar;
}

/**
 * Reproducible inverted dropout: each call site draws its mask from `seed + counter` (counter
 * incremented per call), so the same `dropoutSeed` gives the same masks on the same backend.
 */
export class DropoutContext {
  private counter = 0;
  /**
   * @param training apply dropout only when true
   * @param seed base seed of the masks; undefined → a random base seed
   */
  constructor(
    readonly training: boolean,
    readonly seed: number = Math.floor(Math.random() * 2 ** 31),
  ) {}

  /** `x` with elements zeroed with probability `rate` and survivors scaled by `1/(1−rate)`. */
  apply<T extends tf.Tensor>(x: T, rate: number): T {
    if (!this.training || rate <= 0) return x;
    const m = dropoutMask(x.shape, rate, this.nextSeed());
    return tf.mul(x, m) as T;
  }

  /** Seed for the next dropout site (advances the counter). */
  nextSeed(): number {
    return (this.seed + 7919 * this.counter++) >>> 0;
  }
}

/**
 * Column sums of a 2-D tensor as a plain matmul `ones[1, rows] @ x` (wasm's `Sum` over axis 0
 * transposes first).
 * @param x `[rows, cols]`
 * @returns `[cols]`
 */
export function colSum(x: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x), [x.shape[1]]) as tf.Tensor1D);
}

/**
 * Forward LayerNorm of `x + residual` (no tape entry) that also returns what its backward needs
 * (`xhat`, `rstd` `[rows, 1]`): one native pass ({@link LAYER_NORM}) on the native kernels.
 * @param x `[rows, h]`
 * @param residual added to `x` first (same shape), or undefined
 */
export function layerNormFwd(
  x: tf.Tensor2D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps: number,
  residual?: tf.Tensor2D,
): { y: tf.Tensor2D; xhat: tf.Tensor2D; rstd: tf.Tensor2D } {
  if (nativeMatmul()) {
    const inputs: tf.NamedTensorMap = residual ? { x, residual, gamma, beta } : { x, gamma, beta };
    const [y, xhat, rstd] = tf.engine().runKernel(LAYER_NORM, inputs, { eps }) as unknown as tf.Tensor2D[];
    return { y, xhat, rstd };
  }
  const v = residual ? (tf.add(x, residual) as tf.Tensor2D) : x;
  const mu = tf.mean(v, -1, true);
  const xc = tf.sub(v, mu);
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps)) as tf.Tensor2D;
  const xhat = tf.mul(xc, rstd) as tf.Tensor2D;
  return { y: tf.add(tf.mul(xhat, gamma), beta) as tf.Tensor2D, xhat, rstd };
}

/**
 * LayerNorm backward: `dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))` with
 * `dxhat = dy·gamma`; `dgamma = Σ dy·xhat`, `dbeta = Σ dy` over rows.
 */
export function layerNormBwd(
  dy: tf.Tensor2D,
  xhat: tf.Tensor2D,
  rstd: tf.Tensor2D,
  gamma: tf.Tensor,
): { dx: tf.Tensor2D; dgamma: tf.Tensor1D; dbeta: tf.Tensor1D } {
  const dxhat = tf.mul(dy, gamma);
  const m1 = tf.mean(dxhat, -1, true);
  const m2 = tf.mean(tf.mul(dxhat, xhat), -1, true);
  const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xhat, m2)), rstd) as tf.Tensor2D;
  return { dx, dgamma: colSum(tf.mul(dy, xhat) as tf.Tensor2D), dbeta: colSum(dy) };
}

/** Derivative of exact GELU: `Φ(z) + z·φ(z)`. */
export function geluGrad(z: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    tf.add(
      tf.mul(tf.add(tf.erf(tf.mul(z, Math.SQRT1_2)), 1), 0.5),
      tf.mul(z, tf.mul(tf.exp(tf.mul(tf.square(z), -0.5)), 1 / Math.sqrt(2 * Math.PI))),
    ),
  );
}
