/**
 * Masked-language-model batches exactly as Geneformer built them: HuggingFace
 * `DataCollatorForLanguageModeling(mlm_probability=0.15)` (transformers
 * `data/data_collator.py: torch_mask_tokens`) driven by Geneformer's tokenizer stand-in whose only
 * special tokens are `<pad>` and `<mask>` (GF `geneformer/pretrainer.py@05fcbeb`; reference-spec §1b).
 *
 * - Each position that holds neither `<pad>` nor `<mask>` is selected independently with
 *   probability `mlmProbability` (Bernoulli, not an exact 15%). In V2, `<cls>`/`<eos>` are not
 *   special to the collator, so they can be selected, as in the reference.
 * - Of the selected positions: 80% → `<mask>`, 10% → a uniformly random id in [0, vocabSize)
 *   (which may be a special token), 10% unchanged (HF draws Bernoulli(0.8) for `<mask>`, then
 *   Bernoulli(0.5) among the rest for random; same distribution here).
 * - Labels: the original id at selected positions (HF writes −100 elsewhere; cellfm stores only
 *   the selected positions, flat index `b * seqLen + i`, which is what the MLM head consumes).
 * - Right-padding with `<pad>` to the longest cell in the batch; attention mask 1 for real tokens.
 *
 * The random stream is cellfm's seeded Alea generator ({@link makeRng}), so batches are
 * reproducible from a seed and the generator state can be saved for exact resume; the draws are
 * not bit-identical to torch's generator (same distribution).
 */
import type { Rng } from "../rng.js";
import { padRows } from "../model/batch.js";

/** Token ids the collator needs to know. */
export interface MaskingOptions {
  /** Vocabulary size V: random replacement ids are drawn from [0, V). */
  vocabSize: number;
  /** Selection probability (Geneformer 0.15). */
  mlmProbability: number;
  /** `<pad>` id (0 in Geneformer V1 and V2). */
  padTokenId?: number;
  /** `<mask>` id (1 in Geneformer V1 and V2). */
  maskTokenId?: number;
  /**
   * When true (the default) and no position of the whole batch was selected (possible only for
   * very short cells), one eligible position is selected uniformly at random so the loss is
   * defined (HF would return NaN for such a batch).
   */
  ensureOne?: boolean;
}

/** One MLM batch, as flat typed arrays (row-major). */
export interface MlmBatch {
  /** Number of cells. */
  batch: number;
  /** Padded length = longest cell in the batch. */
  seqLen: number;
  /** Input ids after masking, int32 `[batch * seqLen]` (row-major `[batch, seqLen]`). */
  inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding, float32 `[batch * seqLen]`. */
  attentionMask: Float32Array;
  /** Flat indices `b * seqLen + i` of the selected positions, ascending. */
  positions: Int32Array;
  /** Original token id at each selected position (same order as `positions`). */
  labels: Int32Array;
  /** Number of real (non-pad) tokens in the batch. */
  realTokens: number;
}

/**
 * Pad a list of cells (token ids) and apply MLM masking.
 *
 * @param cells token ids per cell (already truncated), each non-empty.
 * @param rng seeded generator; advanced by the draws.
 * @throws Error for an empty batch or an empty cell.
 */
export function collateMlm(cells: readonly Int32Array[], rng: Rng, opts: MaskingOptions): MlmBatch {
  const pad = opts.padTokenId ?? 0;
  const mask = opts.maskTokenId ?? 1;
  const p = opts.mlmProbability;
  const V = opts.vocabSize;
  const { batch: B, seqLen, inputIds, attentionMask, realTokens } = padRows(cells, undefined, pad, undefined, "collateMlm");
  const pos: number[] = [];
  const lab: number[] = [];
  for (let b = 0; b < B; b++) {
    const c = cells[b];
    const off = b * seqLen;
    for (let i = 0; i < c.length; i++) {
      const id = c[i];
      if (id === pad || id === mask) continue;
      if (rng() < p) {
        pos.push(off + i);
        lab.push(id);
        const u = rng();
        if (u < 0.8) inputIds[off + i] = mask;
        else if (u < 0.9) inputIds[off + i] = Math.floor(rng() * V);
        // else: unchanged
      }
    }
  }
  if (pos.length === 0 && (opts.ensureOne ?? true)) {
    const eligible: number[] = [];
    for (let b = 0; b < B; b++) {
      const c = cells[b];
      for (let i = 0; i < c.length; i++) if (c[i] !== pad && c[i] !== mask) eligible.push(b * seqLen + i);
    }
    if (eligible.length > 0) {
      const f = eligible[Math.floor(rng() * eligible.length)];
      pos.push(f);
      lab.push(inputIds[f]);
      const u = rng();
      if (u < 0.8) inputIds[f] = mask;
      else if (u < 0.9) inputIds[f] = Math.floor(rng() * V);
    }
  }
  return {
    batch: B,
    seqLen,
    inputIds,
    attentionMask,
    positions: Int32Array.from(pos),
    labels: Int32Array.from(lab),
    realTokens,
  };
}
