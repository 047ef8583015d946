/**
 * Gradients of the tfjs kernels the cellfm model differentiates through.
 *
 * `@tensorflow/tfjs-core` registers no gradients by itself (the union package `@tensorflow/tfjs`
 * imports `register_all_gradients`, whose ES-module build Node cannot load), and cellfm depends on
 * tfjs-core only. So the gradients of the kernels on the model's differentiable path are registered
 * here, ported from tfjs-core 4.22 `src/gradients/*_grad.ts` (Apache-2.0). A kernel that already has
 * a gradient (e.g. when `@tensorflow/tfjs-node` loaded the full set) is left alone.
 * Matmuls, gathers, the fused dense layer and the cross-entropy have custom gradients in `./ops.ts`.
 */
import * as tf from "@tensorflow/tfjs-core";

const { getReductionAxes, assertAndGetBroadcastShape } = tf.broadcast_util;

/** Sum `dy` over the broadcast axes of an input of `shape`, then reshape to it. */
function unbroadcast(dy: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, shape);
}

type Attrs = Record<string, unknown>;

const configs: tf.GradConfig[] = [
  {
    kernelName: tf.Add,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved;
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(dy as tf.Tensor, a.shape, out), b: () => unbroadcast(dy as tf.Tensor, b.shape, out) };
    },
  },
  {
    kernelName: tf.Sub,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved;
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return {
        a: () => unbroadcast(dy as tf.Tensor, a.shape, out),
        b: () => tf.neg(unbroadcast(dy as tf.Tensor, b.shape, out)),
      };
    },
  },
  {
    kernelName: tf.Multiply,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved;
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return {
        a: () => unbroadcast(tf.mul(dy as tf.Tensor, tf.cast(b, "float32")), a.shape, out),
        b: () => unbroadcast(tf.mul(dy as tf.Tensor, tf.cast(a, "float32")), b.shape, out),
      };
    },
  },
  {
    kernelName: tf.RealDiv,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved;
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return {
        a: () => unbroadcast(tf.div(dy as tf.Tensor, tf.cast(b, "float32")), a.shape, out),
        b: () => {
          const res = tf.mul(dy as tf.Tensor, tf.cast(a, "float32"));
          return tf.neg(unbroadcast(tf.div(res, tf.square(tf.cast(b, "float32"))), b.shape, out));
        },
      };
    },
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam((attrs as Attrs).axis as number | number[], x.shape);
      let n = 1;
      const expanded = x.shape.slice();
      for (const ax of axes) {
        n *= x.shape[ax];
        expanded[ax] = 1;
      }
      return { x: () => tf.div(tf.mul(tf.reshape(dy as tf.Tensor, expanded), tf.ones(x.shape, "float32")), n) };
    },
  },
  {
    // tfjs-core src/gradients/Max_grad.ts: the gradient flows to the maximal entries (all of them on ties)
    kernelName: tf.Max,
    inputsToSave: ["x"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved;
      const axes = tf.util.parseAxisParam((attrs as Attrs).reductionIndices as number | number[], x.shape);
      const expanded = x.shape.slice();
      for (const ax of axes) expanded[ax] = 1;
      return { x: () => tf.mul(tf.reshape(dy as tf.Tensor, expanded), tf.cast(tf.equal(x, tf.reshape(y, expanded)), "float32")) };
    },
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam((attrs as Attrs).axis as number | number[], x.shape);
      const expanded = x.shape.slice();
      for (const ax of axes) expanded[ax] = 1;
      return { x: () => tf.mul(tf.reshape(dy as tf.Tensor, expanded), tf.ones(x.shape, "float32")) };
    },
  },
  {
    kernelName: tf.Square,
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(tf.cast(saved[0], "float32"), 2)) }),
  },
  {
    kernelName: tf.Rsqrt,
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => ({ x: () => tf.neg(tf.div(dy as tf.Tensor, tf.mul(tf.pow(saved[0], 1.5), 2))) }),
  },
  {
    kernelName: tf.Relu,
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.step(tf.cast(saved[0], "float32"))) }),
  },
  {
    kernelName: tf.Erf,
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => {
      const x = saved[0];
      return { x: () => tf.mul(dy as tf.Tensor, tf.mul(tf.exp(tf.neg(tf.square(x))), 2 / Math.sqrt(Math.PI))) };
    },
  },
  {
    kernelName: tf.Exp,
    outputsToSave: [true],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, saved[0]) }),
  },
  {
    // tfjs-core 4.22 src/gradients/Sigmoid_grad.ts: dy · y · (1 − y), y the output
    kernelName: tf.Sigmoid,
    outputsToSave: [true],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(saved[0], tf.sub(1, saved[0]))) }),
  },
  {
    kernelName: tf.Neg,
    gradFunc: (dy) => ({ x: () => tf.neg(dy as tf.Tensor) }),
  },
  {
    kernelName: tf.Identity,
    gradFunc: (dy) => ({ x: () => tf.cast(dy as tf.Tensor, "float32") }),
  },
  {
    kernelName: tf.Cast,
    gradFunc: (dy) => ({ x: () => tf.clone(dy as tf.Tensor) }),
  },
  {
    kernelName: tf.Reshape,
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as tf.Tensor, saved[0].shape) }),
  },
  {
    kernelName: tf.Transpose,
    gradFunc: (dy, _saved, attrs) => {
      const perm = (attrs as Attrs).perm as number[];
      return { x: () => tf.transpose(dy as tf.Tensor, tf.backend_util.getUndoAxesPermutation(perm)) };
    },
  },
  {
    kernelName: tf.Unpack,
    gradFunc: (dy, _saved, attrs) => ({ value: () => tf.stack(dy as tf.Tensor[], (attrs as Attrs).axis as number) }),
  },
  {
    kernelName: tf.Pack,
    saveAllInputs: true,
    gradFunc: (dy, _saved, attrs) => {
      const parts = tf.unstack(dy as tf.Tensor, (attrs as Attrs).axis as number);
      return parts.map((t) => () => t) as unknown as Record<string, () => tf.Tensor>;
    },
  },
  {
    kernelName: tf.Slice,
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0];
      const [begin, size] = tf.slice_util.parseSliceParams(x, (attrs as Attrs).begin as number[], (attrs as Attrs).size as number[]);
      const pads: [number, number][] = x.shape.map((d, i) => [begin[i], d - begin[i] - size[i]]);
      return { x: () => tf.pad(dy as tf.Tensor, pads) };
    },
  },
  {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const y = saved[0];
      const dim = (attrs as Attrs).dim as number;
      const dyY = tf.mul(dy as tf.Tensor, y);
      return { logits: () => tf.sub(dyY, tf.mul(tf.sum(dyY, [dim], true), y)) };
    },
  },
];

let done = false;

/** Register the gradients above for kernels that have none yet. Idempotent. */
export function registerModelGradients(): void {
  if (done) return;
  for (const c of configs) {
    if (!tf.getGradient(c.kernelName)) tf.registerGradient(c);
  }
  done = true;
}

registerModelGradients();
