/**
 * Predicted mean expression of a denoise-trained model (scPRINT's denoising, Kalfon et al. 2025,
 * cantinilab/scPRINT `scprint/model/model.py` — the mean of the ZINB / NB / Poisson head): for each
 * context (a cell's genes as token ids, with their input values), μ_g = softmax over the context's
 * genes of the head's mean logits × the context's library size. μ is in counts; it sums to the
 * library size over the context.
 *
 * Contexts are sorted by length and batched under a token budget, so padding is small; a context's
 * prediction does not depend on the others in its batch (padded keys get zero attention weight and
 * −1e9 mean logits).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel, ForwardContext } from "../model/bert.js";
import { DropoutContext } from "../model/ops.js";
import { DenoiseHead } from "../model/value-model.js";
import { tokenHeadOf } from "../model/cell-heads.js";
import { planBatches } from "../embed/embed.js";

/** One context to predict: the genes the model sees together. */
export interface DenoiseInput {
  /** token ids `[k]` int32 (no padding). */
  ids: Int32Array;
  /** input value per token `[k]` float32 (bin index or raw count; ignored by rank models). */
  values: Float32Array;
  /** library size the predicted means sum to (counts), > 0. */
  libSize: number;
}

/**
 * Predicted means of every context's genes.
 * @param model a model with a {@link DenoiseHead} (objective `denoise`)
 * @param opts.maxTokensPerBatch padded tokens per forward pass (default 16,384; does not change the result)
 * @param opts.onProgress called after each batch with contexts done and the total
 * @returns float32 `[k]` per context, in input order (counts)
 * @throws Error when the model has no denoise head, a context is empty or longer than
 *   `max_position_embeddings`, or a library size is not a finite number > 0.
 */
export function predictMeans(
  model: CellModel,
  contexts: readonly DenoiseInput[],
  opts: { maxTokensPerBatch?: number; onProgress?: (done: number, total: number) => void } = {},
): Float32Array[] {
  const head = tokenHeadOf(model.head);
  if (!(head instanceof DenoiseHead)) {
    throw new Error(`predictMeans: the model has no denoise head (its objective is ${model.spec.objective})`);
  }
  const c = model.config;
  contexts.forEach((x, i) => {
    if (x.ids.length === 0) throw new Error(`context ${i} has no genes`);
    if (x.ids.length > c.max_position_embeddings) throw new Error(`context ${i} has ${x.ids.length} genes, more than max_position_embeddings (${c.max_position_embeddings})`);
    if (x.values.length !== x.ids.length) throw new Error(`context ${i}: ${x.ids.length} ids but ${x.values.length} values`);
    if (!(x.libSize > 0) || !Number.isFinite(x.libSize)) throw new Error(`context ${i}: library size ${x.libSize} is not a finite number > 0`);
  });
  const out: Float32Array[] = new Array(contexts.length);
  const batches = planBatches(
    contexts.map((x) => x.ids.length),
    opts.maxTokensPerBatch ?? 16384,
  );
  let done = 0;
  for (const idx of batches) {
    const L = Math.max(...idx.map((i) => contexts[i].ids.length));
    const B = idx.length;
    const ids = new Int32Array(B * L).fill(c.pad_token_id);
    const mask = new Float32Array(B * L);
    const vals = new Float32Array(B * L);
    const lib = new Float32Array(B);
    idx.forEach((ci, b) => {
      const x = contexts[ci];
      ids.set(x.ids, b * L);
      vals.set(x.values, b * L);
      mask.fill(1, b * L, b * L + x.ids.length);
      lib[b] = x.libSize;
    });
    const mu = tf.tidy(() => {
      const batch = {
        inputIds: tf.tensor2d(ids, [B, L], "int32"),
        attentionMask: tf.tensor2d(mask, [B, L], "float32"),
        values: tf.tensor2d(vals, [B, L], "float32"),
      };
      const h = model.bert.forward(batch, { training: false }).lastHiddenState; // [B, L, H]
      const ctx: ForwardContext = { config: c, dropout: new DropoutContext(false) };
      return head.params(tf.reshape(h, [B * L, c.hidden_size]) as tf.Tensor2D, batch, tf.tensor1d(lib, "float32"), ctx).mu;
    });
    const m = mu.dataSync() as Float32Array;
    mu.dispose();
    idx.forEach((ci, b) => (out[ci] = m.slice(b * L, b * L + contexts[ci].ids.length)));
    done += B;
    opts.onProgress?.(done, contexts.length);
  }
  return out;
}
