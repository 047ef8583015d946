/**
 * Memory a model configuration needs, estimated from its `BertConfig` before anything is allocated,
 * so a typo (`max_position_embeddings: 1e8`, `hidden_size: 1048576`) is refused naming the key
 * instead of running the machine out of memory (issue 20 §5).
 *
 * Estimate (float32 = 4 bytes per value):
 * - parameters: `countParameters` (embeddings, layers, MLM head; `./config.ts`);
 * - training: weights + gradients + AdamW's two moments = 16 bytes per parameter;
 * - activations kept for the backward pass, per layer, for B cells × T tokens, hidden H,
 *   intermediate I, A heads: about B·T·(10·H + 2·I) values (Q, K, V, context, attention output,
 *   residuals, layer-norm inputs, dropout masks, FFN input/output) plus 3·B·A·T² (scores,
 *   probabilities, dropout mask) — the layout of HF `BertLayer` (transformers
 *   `models/bert/modeling_bert.py`); embedding runs keep one layer's activations at a time.
 * The estimate is a lower bound of what TensorFlow.js allocates (it ignores temporaries), so a
 * configuration refused here would not have fit.
 */
import * as os from "node:os";
import { GENEFORMER_V1_6L, countParameters, type BertConfig } from "./config.js";

/** Largest number of values one tensor may hold: TensorFlow.js typed arrays and wasm indexing are 32-bit. */
export const MAX_TENSOR_VALUES = 2 ** 31 - 1;

/** The configuration keys that size a model, each with the Geneformer V1 value used to find the culprit. */
const SIZE_KEYS = ["hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings", "num_attention_heads", "vocab_size"] as const;
type SizeKey = (typeof SIZE_KEYS)[number];

/** A batch shape: cells per step and tokens per cell (padded length). */
export interface BatchShape {
  cells: number;
  tokens: number;
}

/** What {@link estimateMemory} finds. */
export interface MemoryEstimate {
  parameters: number;
  /** bytes of weights (+ gradients and AdamW moments when training). */
  weightBytes: number;
  /** bytes of activations for the batch. */
  activationBytes: number;
  totalBytes: number;
  /** the largest single tensor: its values and what it is. */
  largestTensor: { values: number; what: string };
}

/**
 * Estimate the memory of training (`training: true`) or running a model of config `c` on batches
 * of `batch`. @returns bytes (see the module comment for the formula).
 */
export function estimateMemory(c: BertConfig, batch: BatchShape, training: boolean): MemoryEstimate {
  const H = c.hidden_size, I = c.intermediate_size, A = c.num_attention_heads, L = c.num_hidden_layers;
  const B = batch.cells, T = Math.min(batch.tokens, c.max_position_embeddings);
  const parameters = countParameters(c);
  const weightBytes = (training ? 16 : 4) * parameters;
  const perLayer = B * T * (10 * H + 2 * I) + 3 * B * A * T * T;
  const activationBytes = 4 * (training ? L * perLayer : perLayer) + 4 * B * T * H * 2;
  const tensors: [number, string][] = [
    [c.vocab_size * H, `the word embeddings (vocab_size ${c.vocab_size} × hidden_size ${H})`],
    [c.max_position_embeddings * H, `the position embeddings (max_position_embeddings ${c.max_position_embeddings} × hidden_size ${H})`],
    [H * H, `an attention weight (hidden_size ${H} × hidden_size ${H})`],
    [H * I, `a feed-forward weight (hidden_size ${H} × intermediate_size ${I})`],
    [B * A * T * T, `the attention scores of a batch (${B} cells × ${A} heads × ${T}² tokens)`],
    [B * T * I, `the feed-forward activations of a batch (${B} cells × ${T} tokens × intermediate_size ${I})`],
  ];
  const [values, what] = tensors.sort((a, b) => b[0] - a[0])[0];
  return { parameters, weightBytes, activationBytes, totalBytes: weightBytes + activationBytes, largestTensor: { values, what } };
}

/** The default memory limit: this machine's physical memory. */
export function defaultMemoryLimit(): number {
  return os.totalmem();
}

function gib(bytes: number): string {
  const g = bytes / 2 ** 30;
  return g >= 1024 ? `${(g / 1024).toFixed(1)} TiB` : g >= 10 ? `${g.toFixed(0)} GiB` : `${g.toFixed(1)} GiB`;
}

function count(n: number): string {
  return n >= 1e12 ? `${(n / 1e12).toFixed(1)} T` : n >= 1e9 ? `${(n / 1e9).toFixed(1)} G` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : String(Math.round(n));
}

/**
 * Refuse a configuration whose estimated memory exceeds `limitBytes`, or with a tensor larger than
 * {@link MAX_TENSOR_VALUES}, naming the key responsible: of the size keys, the one whose reset to
 * Geneformer V1's value (`GENEFORMER_V1_6L`) shrinks the estimate most (batch_size / max_length
 * when the batch is what is too large).
 * @param where prefix of the message (the config file) and how keys are spelled there (`model.`).
 * @param limit bytes allowed and where that number comes from, for the message.
 * @throws Error `<file>: model.<key>: <value> makes the model need ~X (...) above the limit of Y (...)`.
 */
export function checkModelMemory(
  c: BertConfig,
  batch: BatchShape,
  training: boolean,
  where: { source: string; prefix: string; batchKeys?: { cells: string; tokens: string } },
  limit: { bytes: number; what: string },
): MemoryEstimate {
  const e = estimateMemory(c, batch, training);
  const tooBigTensor = e.largestTensor.values > MAX_TENSOR_VALUES;
  if (!tooBigTensor && e.totalBytes <= limit.bytes) return e;
  // the culprit: the key whose Geneformer value shrinks the estimate most
  const measure = (x: MemoryEstimate) => (tooBigTensor ? x.largestTensor.values : x.totalBytes);
  let culprit = "";
  let best = measure(e);
  for (const k of SIZE_KEYS) {
    const alt = { ...c, [k]: k === "vocab_size" ? Math.min(c.vocab_size, 25426) : GENEFORMER_V1_6L[k as Exclude<SizeKey, "vocab_size">] };
    if (k === "hidden_size" || k === "num_attention_heads") alt.num_attention_heads = Math.max(1, Math.min(alt.num_attention_heads, alt.hidden_size));
    const m = measure(estimateMemory(alt, batch, training));
    if (m < best) (best = m), (culprit = `${where.prefix}${k}: ${c[k as SizeKey]}`);
  }
  if (where.batchKeys) {
    for (const [b, key] of [[{ ...batch, cells: Math.min(batch.cells, 12) }, where.batchKeys.cells], [{ ...batch, tokens: Math.min(batch.tokens, 2048) }, where.batchKeys.tokens]] as const) {
      const m = measure(estimateMemory(c, b, training));
      if (m < best) (best = m), (culprit = `${key}: ${key.endsWith("batch_size") ? batch.cells : batch.tokens}`);
    }
  }
  const who = culprit || `${where.prefix}hidden_size: ${c.hidden_size}`;
  if (tooBigTensor) {
    throw new Error(
      `${where.source}: ${who} is too large: ${e.largestTensor.what} would hold ${count(e.largestTensor.values)} values, ` +
        `more than one tensor can (${count(MAX_TENSOR_VALUES)}); check the value (a typo?)`,
    );
  }
  throw new Error(
    `${where.source}: ${who} makes the model need ~${gib(e.totalBytes)} to ${training ? "train" : "run"} ` +
      `(${count(e.parameters)} parameters: ${gib(e.weightBytes)} of ${training ? "weights, gradients and AdamW state" : "weights"}; ` +
      `${gib(e.activationBytes)} of activations for ${batch.cells} cells × ${Math.min(batch.tokens, c.max_position_embeddings)} tokens), ` +
      `above the limit of ${gib(limit.bytes)} (${limit.what}); check the value (a typo?)`,
  );
}
