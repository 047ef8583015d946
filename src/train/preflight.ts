/**
 * Checks `cellfm train` runs before it allocates a model or touches its output folder (issue 20 §5):
 * the model's estimated memory against a limit, and a `--resume` onto tokens of another encoding.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { checkModelMemory, defaultMemoryLimit } from "../model/memory.js";
import type { BertConfig } from "../model/config.js";
import { encodingFromManifest } from "../tokenize/geneformer.js";
import type { TrainConfig } from "./config.js";

/**
 * Refuse a model whose weights, gradients, AdamW state and activations (largest batch: `batch_size`
 * cells of the longest training context, capped by `max_tokens_per_batch`) would exceed
 * `training.memory_limit_gb` (default: this machine's memory), naming the key responsible.
 * @param lengths context length of every training cell.
 * @throws Error `<config>: model.<key>: <value> makes the model need ~X ... above the limit of Y (...)`.
 */
export function checkTrainingMemory(config: TrainConfig, bert: BertConfig, lengths: Int32Array): void {
  let longest = 1;
  for (const l of lengths) if (l > longest) longest = l;
  const tokens = Math.min(longest, bert.max_position_embeddings);
  const t = config.training;
  // a batch holds at most batch_size cells, at most the training cells, at most max_tokens_per_batch / tokens
  const cap = t.max_tokens_per_batch ? Math.floor(t.max_tokens_per_batch / tokens) : t.batch_size;
  const cells = Math.max(1, Math.min(t.batch_size, lengths.length, cap));
  const limit = t.memory_limit_gb
    ? { bytes: t.memory_limit_gb * 2 ** 30, what: `training.memory_limit_gb: ${t.memory_limit_gb}` }
    : { bytes: defaultMemoryLimit(), what: "this machine's memory; set training.memory_limit_gb to change it" };
  checkModelMemory(bert, { cells, tokens }, true, { source: config.source, prefix: "model.", batchKeys: { cells: "training.batch_size", tokens: "data.max_length" } }, limit);
}

/** `encoding (--encoding <name>)` for a message, e.g. `scgpt-binned (--encoding binned)`. */
function describeEncoding(name: string): string {
  const e = encodingFromManifest(name);
  return e ? `${name} (tokenize --encoding ${e})` : name;
}

/**
 * Refuse `--resume` from a checkpoint trained on tokens of another encoding than `data.tokens`
 * (the weights would not even fit: rank models have no value embedding), naming both.
 * @throws Error naming the checkpoint, the tokens folder and both encodings.
 */
export function checkResumeEncoding(checkpoint: string, encoding: string, tokens: string): void {
  let was: string | undefined;
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(checkpoint, "config.json"), "utf8")) as { cellfm?: { encoding?: string } };
    was = cfg.cellfm?.encoding;
  } catch {
    return; // an unreadable config.json is reported by the checkpoint reader, naming the file
  }
  if (was !== undefined && was !== encoding) {
    throw new Error(
      `cannot resume from ${checkpoint}: it was trained on tokens of encoding ${describeEncoding(was)}, ` +
        `but data.tokens ${tokens} holds encoding ${describeEncoding(encoding)}; resume with the tokens it was trained on, ` +
        `or start a new run (another output.dir, or --force)`,
    );
  }
}
