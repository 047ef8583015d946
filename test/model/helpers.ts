import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import type { BertConfig } from "../../src/model/config.js";
import type { ModelBatch } from "../../src/model/bert.js";

/** Tiny model for fast tests: 2 layers, hidden 32, 4 heads, vocab 200. */
export const TINY: BertConfig = {
  vocab_size: 200,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  hidden_act: "relu",
  max_position_embeddings: 64,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  layer_norm_eps: 1e-12,
  pad_token_id: 0,
  type_vocab_size: 2,
  initializer_range: 0.02,
};

export async function useBackend(name: "cpu" | "wasm"): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

/** Right-padded batch from per-cell token arrays (pad 0). */
export function makeBatch(cells: number[][], seqLen?: number): ModelBatch {
  const L = seqLen ?? Math.max(...cells.map((c) => c.length));
  const ids = new Int32Array(cells.length * L);
  const mask = new Float32Array(cells.length * L);
  cells.forEach((c, b) => c.forEach((t, i) => ((ids[b * L + i] = t), (mask[b * L + i] = 1))));
  return {
    inputIds: tf.tensor2d(ids, [cells.length, L], "int32"),
    attentionMask: tf.tensor2d(mask, [cells.length, L], "float32"),
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Deterministic pseudo-random token cells with ids in [3, vocab). */
export function randomCells(n: number, minLen: number, maxLen: number, vocab: number, seed = 1): number[][] {
  let s = seed >>> 0;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    const len = minLen + Math.floor(rnd() * (maxLen - minLen + 1));
    out.push(Array.from({ length: len }, () => 3 + Math.floor(rnd() * (vocab - 3))));
  }
  return out;
}
