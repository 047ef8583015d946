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
// tfjs-core alone registers no gradients: ./gradients.ts registers the ones the model needs.
import "./gradients.js";

/** Activation names shared with `BertConfig.hidden_act`. */
export type Activation = "relu" | "gelu" | "linear";

type CustomFwd = (
  inputs: tf.Tensor[],
  save: tf.GradSaveFunc,
) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] };

/** `tf.customGrad` over `n` tensor inputs with a typed forward function. */
function custom(n: number, fwd: CustomFwd): (...args: tf.Tensor[]) => tf.Tensor {
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
        return [tf.matMul(dy as tf.Tensor2D, tf.transpose(ys)), tf.matMul(tf.transpose(xs), dy as tf.Tensor2D)];
      },
    };
  });
  return f(a, b) as tf.Tensor2D;
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
        return [tf.matMul(dz, tf.transpose(ws)), tf.matMul(tf.transpose(xs), dz), tf.sum(dz, 0)];
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
 * `torch.nn.LayerNorm`).
 * @param x `[rows, h]`
 */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
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
    const onehot = oneHotF32(lab as tf.Tensor1D, vocab);
    const lse = tf.logSumExp(lg, 1); // [n]
    const picked = tf.sum(tf.mul(lg, onehot), 1);
    const loss = tf.div(tf.sum(tf.sub(lse, picked)), n) as tf.Scalar;
    save([lg, lab]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [lgs, labs] = saved;
        const oh = oneHotF32(labs as tf.Tensor1D, vocab);
        const g = tf.mul(tf.sub(tf.softmax(lgs), oh), tf.div(dy, n));
        return [g, tf.zerosLike(labs)];
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
    const s = this.seed + 7919 * this.counter++;
    return tf.dropout(x, rate, undefined, s) as T;
  }
}
