/**
 * Shared fixtures of the training tests: the 300 real PBMC cells of data/tiny.h5ad as Geneformer V1
 * tokens (test/fixtures/golden/tiny.v1.jsonl) written as a tokenized dataset, and a tiny-BERT config.
 */
import * as path from "node:path";
import * as fs from "node:fs";
import { writeTokenizedDataset } from "../../src/data/tokenized.js";
import { parseTrainConfig, type TrainConfig } from "../../src/train/config.js";

/** Tiny BERT used by the training tests (1 layer, hidden 32, 2 heads, FFN 64, 64 positions). */
export const TINY_MODEL = { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64 };

/**
 * Write the golden tiny.v1 tokens as a tokenized dataset at `dir`.
 * @returns the cells' token ids, in file order.
 */
export function writeGoldenTokens(dir: string): Int32Array[] {
  const lines = fs
    .readFileSync("test/fixtures/golden/tiny.v1.jsonl", "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { cell: string; input_ids: number[] });
  const cells = lines.map((l) => Int32Array.from(l.input_ids));
  writeTokenizedDataset(dir, {
    cellIds: lines.map((l) => l.cell),
    inputIds: cells,
    meta: {
      encoding: "geneformer-rank-value",
      model_version: "V1",
      dictionary: { name: "token_dictionary_gc30M.pkl", sha256: "golden-test" },
    },
  });
  return cells;
}

/** A validated training config for the tiny model on `tokens`, output in `root/out`. */
export function tinyTrainConfig(
  tokens: string,
  root: string,
  out: string,
  training: Record<string, unknown>,
  model: Record<string, unknown> = {},
): TrainConfig {
  return parseTrainConfig(
    {
      model: { ...TINY_MODEL, ...model },
      data: { tokens, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 2, log_every: 2, seed: 7, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );
}
