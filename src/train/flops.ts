/**
 * Model FLOPs of one training step, for the model-FLOPs-utilisation (MFU) figure in the training
 * log (nanoGPT's `estimate_mfu`, adapted to BERT; the head's FLOPs come from the objective, e.g.
 * MLM logits only at masked positions).
 *
 * Counted (multiply-add = 2 FLOPs), forward pass, per real (non-pad) token of a cell of length L:
 * per layer `2·4H²` (Q, K, V, output projections) + `2·2·H·F` (FFN) + `2·2·L·H` (QKᵀ and A·V);
 * per masked position `2·H²` (head transform) + `2·H·V` (decoder). Embedding look-ups, LayerNorm,
 * softmax and element-wise ops are not counted. Training = 3 × forward (backward ≈ 2 × forward).
 */
import type { BertConfig } from "../model/config.js";

/**
 * Forward FLOPs of the encoder (transformer layers) on cells of these real lengths.
 * @param lengths real token count of each cell in the batch.
 */
export function encoderFlops(c: BertConfig, lengths: ArrayLike<number>): number {
  const H = c.hidden_size;
  const F = c.intermediate_size;
  let fwd = 0;
  for (let i = 0; i < lengths.length; i++) {
    const L = lengths[i];
    fwd += c.num_hidden_layers * L * (8 * H * H + 4 * H * F + 4 * L * H);
  }
  return fwd;
}

/** Forward FLOPs of the MLM head over the gene vocabulary: per masked position `2·H²` + `2·H·V`. */
export function mlmHeadFlops(c: BertConfig, maskedPositions: number): number {
  const H = c.hidden_size;
  return maskedPositions * (2 * H * H + 2 * H * c.vocab_size);
}

/**
 * Training FLOPs of one micro-batch: 3 × (encoder + head) forward FLOPs.
 * @param lengths real token count of each cell in the batch.
 * @param headForwardFlops the objective's head FLOPs for this batch (`Objective.headFlops`).
 */
export function trainingFlops(c: BertConfig, lengths: ArrayLike<number>, headForwardFlops: number): number {
  return 3 * (encoderFlops(c, lengths) + headForwardFlops);
}

/**
 * Peak FLOP/s used as the MFU denominator when `training.peak_flops` is not set, per backend and
 * matmul kernels (`BackendInfo.kernels`). These are stated reference points, not measurements of the
 * machine the run is on.
 */
export function defaultPeakFlops(backend: string, kernels = ""): { flops: number; source: string } {
  if (backend === "tensorflow") {
    return { flops: 19.5e12, source: "NVIDIA A100 FP32 peak (19.5 TFLOP/s); set training.peak_flops for your device" };
  }
  if (backend === "wasm" && /^(OpenBLAS|Accelerate|BLAS)/.test(kernels)) {
    const threads = Number(/(\d+) threads?$/.exec(kernels)?.[1] ?? 1);
    return {
      flops: 100e9 * threads,
      source: `one native BLAS thread, ~75-100 GFLOP/s at the model's matmul shapes on the 2-core reference machine (OpenBLAS, AVX-512; issue 18)${threads > 1 ? ` × ${threads} BLAS threads` : ""}`,
    };
  }
  return {
    flops: 40e9,
    source: "one tfjs-wasm thread, plain 2-D matmul, measured ~35-40 GFLOP/s on the 2-core reference machine (docs/design.md)",
  };
}
