/**
 * The one padding of a batch of cells: B rows of token ids (and values) right-padded to a common
 * length L, ids with `pad_token_id`, values with 0, attention mask 1 on real tokens — HF's
 * `DataCollatorForLanguageModeling` / `tokenizer.pad(padding_side="right")` layout. Training's
 * collate, `cellfm embed`, `cellfm denoise`, gene networks and the compare benchmark all pad here.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { ModelBatch } from "./bert.js";

/** A padded batch as flat typed arrays, row-major `[batch, seqLen]`. */
export interface PaddedRows {
  batch: number;
  /** L: the longest row, or the length asked for. */
  seqLen: number;
  /** int32 `[batch * seqLen]`, `padId` after each row's tokens. */
  inputIds: Int32Array;
  /** float32 `[batch * seqLen]`: 1 on real tokens, 0 on padding. */
  attentionMask: Float32Array;
  /** float32 `[batch * seqLen]`, 0 on padding; only when values were given. */
  values?: Float32Array;
  /** real (non-pad) tokens in the batch. */
  realTokens: number;
}

/**
 * Pad rows of token ids (and their values) to one length.
 * @param ids token ids per row (no padding).
 * @param values values per row, aligned with `ids`, or undefined (rank tokens).
 * @param padId the pad token id.
 * @param seqLen pad to this length (default: the longest row, at least 1); must be ≥ every row.
 * @param label when given, an empty batch or an empty row throws `${label}: empty batch` /
 *   `${label}: a cell has no tokens` (training's collate); without it empty rows are padding only.
 * @throws Error as above, or when a row is longer than `seqLen`.
 */
export function padRows(ids: readonly Int32Array[], values: readonly Float32Array[] | undefined, padId: number, seqLen?: number, label?: string): PaddedRows {
  if (label !== undefined && ids.length === 0) throw new Error(`${label}: empty batch`);
  let L = 0, realTokens = 0;
  for (const r of ids) {
    if (label !== undefined && r.length === 0) throw new Error(`${label}: a cell has no tokens`);
    L = Math.max(L, r.length);
    realTokens += r.length;
  }
  if (seqLen !== undefined) {
    if (seqLen < L) throw new Error(`padRows: a row of ${L} tokens does not fit in length ${seqLen}`);
    L = seqLen;
  } else if (label === undefined) L = Math.max(1, L);
  const B = ids.length;
  const inputIds = new Int32Array(B * L).fill(padId);
  const attentionMask = new Float32Array(B * L);
  const vals = values ? new Float32Array(B * L) : undefined;
  ids.forEach((r, b) => {
    inputIds.set(r, b * L);
    attentionMask.fill(1, b * L, b * L + r.length);
    vals?.set(values![b], b * L);
  });
  return { batch: B, seqLen: L, inputIds, attentionMask, ...(vals ? { values: vals } : {}), realTokens };
}

/** The model batch (tensors; the caller disposes them) of padded rows. */
export function toModelBatch(p: Pick<PaddedRows, "batch" | "seqLen" | "inputIds" | "attentionMask" | "values">): ModelBatch {
  const shape: [number, number] = [p.batch, p.seqLen];
  return {
    inputIds: tf.tensor2d(p.inputIds, shape, "int32"),
    attentionMask: tf.tensor2d(p.attentionMask, shape, "float32"),
    ...(p.values ? { values: tf.tensor2d(p.values, shape, "float32") } : {}),
  };
}
