/**
 * One post-LN BERT encoder layer (HF `BertLayer`) as a single differentiable op with a hand-written
 * backward pass. Why: tfjs' tape keeps every intermediate gradient until the whole backward pass
 * ends and clones every saved tensor, so a 6-layer step at 512×4 tokens peaked at ~2.5 GB and ran
 * hundreds of small kernels per layer. Here the forward saves only what the backward needs
 * (inputs, q/kᵀ/v, softmax probabilities, context, LayerNorm statistics, FFN pre-activation),
 * dropout masks are regenerated from their seeds, and the backward runs inside `tf.tidy`, so
 * intermediates are freed layer by layer. Matmuls go through {@link mm} / {@link bmm}: one kernel
 * call with transpose flags on the native BLAS, plain 2-D matmuls after explicit transposes on wasm.
 * On the native kernels (`src/blas.ts`) q|k|v are one projection and attention is one kernel per
 * direction (`CellfmAttention`, `CellfmAttentionGrad`) that reads the heads in place: no head
 * split/merge transposes; LayerNorm is fused with its residual add.
 *
 * Math: `transformers/models/bert/modeling_bert.py` (BertSelfAttention, BertSelfOutput,
 * BertIntermediate, BertOutput); gradients are the standard ones (as in llm.c `train_gpt2.c`).
 */
import * as tf from "@tensorflow/tfjs-core";
import { ATTENTION, ATTENTION_GRAD } from "../blas.js";
import { bmm, colSum, custom, dropoutMask, geluGrad, layerNormBwd, layerNormFwd, maskedSoftmax, mm, nativeMatmul } from "./ops.js";

/** Weights of one layer in internal layout (dense `[in, out]`). Order matters: it is the op's input order. */
export const LAYER_WEIGHT_KEYS = [
  "qW", "qB", "kW", "kB", "vW", "vB", "oW", "oB", "ln1G", "ln1B", "iW", "iB", "fW", "fB", "ln2G", "ln2B",
] as const;

/** Static settings of a layer op call. */
export interface LayerOpSettings {
  batch: number;
  seqLen: number;
  hidden: number;
  heads: number;
  act: "relu" | "gelu";
  eps: number;
  /** Dropout on attention probabilities / on the two sublayer outputs; null = no dropout. */
  dropout: { attnRate: number; hiddenRate: number; seeds: [number, number, number] } | null;
}

function dense(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor, relu = false): tf.Tensor2D {
  return tf.fused.matMul({ a: x, b: w as tf.Tensor2D, bias: b, activation: relu ? "relu" : "linear" }) as tf.Tensor2D;
}

/**
 * Run one encoder layer.
 * @param x `[batch*seqLen, hidden]`
 * @param w layer weights by {@link LAYER_WEIGHT_KEYS}
 * @param maskBias `[batch, 1, 1, seqLen]` additive attention bias
 * @returns `[batch*seqLen, hidden]`
 */
export function bertLayerOp(x: tf.Tensor2D, w: Record<string, tf.Tensor>, maskBias: tf.Tensor4D, s: LayerOpSettings): tf.Tensor2D {
  const { batch: B, seqLen: L, hidden: H, heads: NH, act, eps } = s;
  const D = H / NH, R = B * L, n = B * NH;
  const scale = 1 / Math.sqrt(D);
  const drop = s.dropout;
  const mAttn = () => (drop && drop.attnRate > 0 ? dropoutMask([n, L, L], drop.attnRate, drop.seeds[0]) : null);
  const mHid = (k: 1 | 2) => (drop && drop.hiddenRate > 0 ? dropoutMask([R, H], drop.hiddenRate, drop.seeds[k]) : null);
  const split = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [B, L, NH, D]), [0, 2, 1, 3]), [n, L, D]) as tf.Tensor3D;
  const merge = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [B, NH, L, D]), [0, 2, 1, 3]), [R, H]) as tf.Tensor2D;

  // Attention, the part that differs between kernels. Native: q|k|v in one matmul ([R, 3H]) and one
  // kernel per direction that reads the heads in place (no split/merge transposes). Elsewhere: three
  // matmuls, heads split by transposes, batched matmuls. Each returns the context [R, H] and what its
  // backward needs; the backward returns the terms of dx and [dqW, dqB, dkW, dkB, dvW, dvB].
  const native = nativeMatmul();
  type AttnFwd = { ctx: tf.Tensor2D; p: tf.Tensor; keep: tf.Tensor[] };
  const attnForward = (x2: tf.Tensor2D, [qW, qB, kW, kB, vW, vB]: tf.Tensor[], mb: tf.Tensor): AttnFwd => {
    if (native) {
      const qkv = dense(x2, tf.concat([qW, kW, vW], 1), tf.concat([qB, kB, vB]));
      const m0 = mAttn();
      const [p, ctx] = tf.engine().runKernel(ATTENTION, m0 ? { qkv, bias: mb, drop: m0 } : { qkv, bias: mb }, { heads: NH, scale }) as tf.Tensor[];
      return { ctx: ctx as tf.Tensor2D, p, keep: [qkv] };
    }
    const qh = split(tf.mul(dense(x2, qW, qB), scale));
    const kT = tf.reshape(tf.transpose(tf.reshape(dense(x2, kW, kB), [B, L, NH, D]), [0, 2, 3, 1]), [n, D, L]) as tf.Tensor3D;
    const vh = split(dense(x2, vW, vB));
    const p = tf.reshape(maskedSoftmax(tf.reshape(bmm(qh, kT), [B, NH, L, L]) as tf.Tensor4D, mb as tf.Tensor4D), [n, L, L]) as tf.Tensor3D;
    const m0 = mAttn();
    const ctx = merge(bmm((m0 ? tf.mul(p, m0) : p) as tf.Tensor3D, vh));
    return { ctx, p, keep: [qh, kT, vh] };
  };
  const attnBackward = (da: tf.Tensor2D, oW: tf.Tensor, xs: tf.Tensor2D, ps: tf.Tensor, keep: tf.Tensor[], [qW, kW, vW]: tf.Tensor[]): [tf.Tensor[], tf.Tensor[]] => {
    if (native) {
      const [qkv] = keep;
      const dctx = mm(da, oW as tf.Tensor2D, false, true);
      const m0 = mAttn();
      const dqkv = tf.engine().runKernel(ATTENTION_GRAD, m0 ? { qkv, p: ps, dctx, drop: m0 } : { qkv, p: ps, dctx }, { heads: NH, scale }) as tf.Tensor2D;
      const dW = mm(xs, dqkv, true), dB = colSum(dqkv);
      const dx = mm(dqkv, tf.concat([qW, kW, vW], 1) as tf.Tensor2D, false, true);
      const cols = (t: tf.Tensor, i: number) => (t.rank === 1 ? tf.slice(t, [i * H], [H]) : tf.slice(t, [0, i * H], [H, H]));
      return [[dx], [cols(dW, 0), cols(dB, 0), cols(dW, 1), cols(dB, 1), cols(dW, 2), cols(dB, 2)]];
    }
    const [qs, ks, vs] = keep as tf.Tensor3D[];
    const dctx = split(mm(da, oW as tf.Tensor2D, false, true));
    const mm0 = mAttn();
    const pd = (mm0 ? tf.mul(ps, mm0) : ps) as tf.Tensor3D;
    const dvT = mm(dctx, pd, true); // dvᵀ [n, D, L]: avoids transposing the [n, L, L] probabilities
    let dp = mm(dctx, vs, false, true) as tf.Tensor;
    if (mm0) dp = tf.mul(dp, mm0);
    const psum = tf.sum(tf.mul(dp, ps), -1, true);
    const ds = tf.mul(ps, tf.sub(dp, psum)) as tf.Tensor3D;
    const dq = tf.mul(merge(mm(ds, ks, false, true)), scale) as tf.Tensor2D;
    const dkT = mm(qs, ds, true); // [n, D, L]
    const dk = tf.reshape(tf.transpose(tf.reshape(dkT, [B, NH, D, L]), [0, 3, 1, 2]), [R, H]) as tf.Tensor2D;
    const dv = tf.reshape(tf.transpose(tf.reshape(dvT, [B, NH, D, L]), [0, 3, 1, 2]), [R, H]) as tf.Tensor2D;
    // plain wasm: transpose x once for the three weight gradients
    const xT = tf.transpose(xs);
    const dx = [mm(dq, qW as tf.Tensor2D, false, true), mm(dk, kW as tf.Tensor2D, false, true), mm(dv, vW as tf.Tensor2D, false, true)];
    return [dx, [tf.matMul(xT, dq), colSum(dq), tf.matMul(xT, dk), colSum(dk), tf.matMul(xT, dv), colSum(dv)]];
  };

  const f = custom(18, (inputs, save) => {
    const [xi, qW, qB, kW, kB, vW, vB, oW, oB, g1, b1, iW, iB, fW, fB, g2, b2, mb] = inputs;
    const x2 = xi as tf.Tensor2D;
    const att = attnForward(x2, [qW, qB, kW, kB, vW, vB], mb);
    const ctx = att.ctx;
    let a: tf.Tensor = dense(ctx, oW, oB);
    const m1 = mHid(1);
    if (m1) a = tf.mul(a, m1);
    const ln1 = layerNormFwd(x2, g1, b1, eps, a as tf.Tensor2D);
    const z = dense(ln1.y, iW, iB, act === "relu"); // relu: z = relu output; gelu: pre-activation
    const h = act === "gelu" ? (tf.mul(tf.mul(z, 0.5), tf.add(tf.erf(tf.mul(z, Math.SQRT1_2)), 1)) as tf.Tensor2D) : z;
    let ff: tf.Tensor = dense(h, fW, fB);
    const m2 = mHid(2);
    if (m2) ff = tf.mul(ff, m2);
    const ln2 = layerNormFwd(ln1.y, g2, b2, eps, ff as tf.Tensor2D);
    save([xi, att.p, ctx, ln1.y, ln1.xhat, ln1.rstd, z, h, ln2.xhat, ln2.rstd, ...att.keep]);
    return {
      value: ln2.y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xs, ps, cs, y1, xh1, rs1, zs, hs, xh2, rs2, ...keep] = saved as tf.Tensor2D[];
          // second sublayer: LN2(y1 + dropout(h @ Wf + bf))
          const l2 = layerNormBwd(dy as tf.Tensor2D, xh2, rs2, g2);
          const mm2 = mHid(2);
          const dff = (mm2 ? tf.mul(l2.dx, mm2) : l2.dx) as tf.Tensor2D;
          const dfW = mm(hs, dff, true), dfB = colSum(dff);
          let dz = mm(dff, fW as tf.Tensor2D, false, true);
          dz = (act === "relu" ? tf.mul(dz, tf.step(zs)) : tf.mul(dz, geluGrad(zs))) as tf.Tensor2D;
          const diW = mm(y1, dz, true), diB = colSum(dz);
          const dy1 = tf.add(l2.dx, mm(dz, iW as tf.Tensor2D, false, true)) as tf.Tensor2D;
          // first sublayer: LN1(x + dropout(ctx @ Wo + bo))
          const l1 = layerNormBwd(dy1, xh1, rs1, g1);
          const mm1 = mHid(1);
          const da = (mm1 ? tf.mul(l1.dx, mm1) : l1.dx) as tf.Tensor2D;
          const doW = mm(cs, da, true), doB = colSum(da);
          const [dxAttn, [dqW, dqB, dkW, dkB, dvW, dvB]] = attnBackward(da, oW, xs, ps, keep, [qW, kW, vW]);
          return [
            tf.addN([l1.dx, ...dxAttn]), dqW, dqB, dkW, dkB, dvW, dvB, doW, doB, l1.dgamma, l1.dbeta,
            diW, diB, dfW, dfB, l2.dgamma, l2.dbeta, tf.zerosLike(mb),
          ];
        }),
    };
  });
  return f(x, ...LAYER_WEIGHT_KEYS.map((k) => w[k]), maskBias) as tf.Tensor2D;
}
