/**
 * Cell embeddings from a trained encoder, the Geneformer way (GF `geneformer/emb_extractor.py@fb6abe0`,
 * reference-spec §1b): hidden states of layer `num_layers + layer` (default −1 = the second-to-last
 * transformer layer; 0 = the last), mean-pooled over a cell's real (non-pad) tokens, or the `<cls>`
 * state (`cls`: the learned `<cls>` a model trained with `model.pooling: cls` prepends, else position
 * 0, Geneformer V2's `<cls>`). Unlike Geneformer's extractor, output rows stay in input order.
 *
 * Cells are sorted by length and batched under a token budget, so padding is small; a cell's
 * embedding does not depend on the other cells in its batch, on padding or on chunking (the
 * attention mask gives padded keys zero weight and pooling ignores padded positions).
 */
import * as tf from "@tensorflow/tfjs-core";
import { BertModel, type CellModel } from "../model/bert.js";
import { padRows, toModelBatch } from "../model/batch.js";
import { throwIfWebGPUFailed } from "../webgpu.js";
import { POOLINGS, poolCells, type Pooling } from "../model/cell-heads.js";

/** Options of {@link embedCells}. */
export interface EmbedOptions {
  /**
   * Geneformer's `emb_layer`: hidden-state index `num_layers + layer`, where index 0 is the embedding
   * output. −1 (default) = output of the second-to-last layer, 0 = last layer, −num_layers = the
   * embedding output.
   */
  layer?: number;
  /** "mean" (default): mean over the cell's tokens; "max": per-unit maximum over them; "cls": the `<cls>` state (the model's learned `<cls>`, else position 0). */
  pool?: Pooling;
  /** Token ids left out of the mean (e.g. V2 `<cls>`, `<eos>`), as Geneformer does for V2 models. */
  excludeSpecial?: number[];
  /** Upper bound on batch × padded length per forward pass (default 16,384 tokens). */
  maxTokensPerBatch?: number;
  /**
   * Per-token values aligned with `cells` (bin index or raw count), for models whose input encoding
   * keeps values (`scgpt-binned`, `scprint-counts`); padded with 0 like the ids.
   */
  values?: Float32Array[];
  /** Called after each batch with the number of cells done and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Plan of padded batches: cell indices per batch, cells sorted by length (longest first). */
export function planBatches(lengths: ArrayLike<number>, maxTokensPerBatch: number): number[][] {
  const order = Array.from({ length: lengths.length }, (_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const batches: number[][] = [];
  let cur: number[] = [];
  let curMax = 0;
  for (const i of order) {
    const len = Math.max(1, lengths[i]);
    const m = Math.max(curMax, len);
    if (cur.length > 0 && m * (cur.length + 1) > maxTokensPerBatch) {
      batches.push(cur);
      cur = [];
      curMax = 0;
    }
    cur.push(i);
    curMax = Math.max(curMax, len);
  }
  if (cur.length) batches.push(cur);
  return batches;
}

/**
 * Embed cells given as token ids (no padding). Runs the encoder only ({@link BertModel}; a whole
 * model's head is not used). Reads each batch synchronously (`dataSync`): wasm, cpu and tensorflow
 * backends; on webgpu use {@link embedCellsAsync}.
 * @param model the encoder, or a model whose `bert` is used
 * @param cells token ids per cell, int32, each of length ≤ `max_position_embeddings`
 * @returns float32 `[nCells * hidden]`, row i = cell i (input order). A cell with no token to pool
 *   (empty, or only excluded special tokens) gets a row of NaN.
 * @throws Error if `layer` is outside `[−num_layers, 0]` or a cell is longer than the position table.
 */
export function embedCells(model: BertModel | CellModel, cells: Int32Array[], opts: EmbedOptions = {}): Float32Array {
  const p = embedPlan(model, cells, opts);
  for (const idx of p.batches) {
    const pooled = p.forward(idx);
    const v = pooled.dataSync() as Float32Array;
    pooled.dispose();
    p.store(idx, v);
  }
  return p.out;
}

/**
 * {@link embedCells} with asynchronous reads (`await t.data()`), as the webgpu backend in Node
 * needs (it has no synchronous read); works on every backend with the same result. The next batch
 * is queued before the previous one is read, so the device is not left idle while the host waits.
 */
export async function embedCellsAsync(model: BertModel | CellModel, cells: Int32Array[], opts: EmbedOptions = {}): Promise<Float32Array> {
  const p = embedPlan(model, cells, opts);
  let prev: { idx: number[]; pooled: tf.Tensor } | undefined;
  for (const idx of [...p.batches, undefined]) {
    const next = idx ? { idx, pooled: p.forward(idx) } : undefined;
    if (prev) {
      const v = (await prev.pooled.data()) as Float32Array;
      prev.pooled.dispose();
      throwIfWebGPUFailed();
      p.store(prev.idx, v);
    }
    prev = next;
  }
  return p.out;
}

/** Validated options, the batch plan, one batch's forward pass and the output rows (shared by the sync and async drivers). */
function embedPlan(model: BertModel | CellModel, cells: Int32Array[], opts: EmbedOptions) {
  const encoder = model instanceof BertModel ? model : model.bert;
  const c = encoder.config;
  const layer = opts.layer ?? -1;
  if (!Number.isInteger(layer) || layer > 0 || layer < -c.num_hidden_layers) {
    throw new Error(`layer must be an integer in [${-c.num_hidden_layers}, 0] (Geneformer emb_layer); got ${layer}`);
  }
  const pool = opts.pool ?? "mean";
  if (!(POOLINGS as readonly string[]).includes(pool)) throw new Error(`pool must be one of ${POOLINGS.join(", ")}; got "${pool}"`);
  const H = c.hidden_size;
  const maxTok = opts.maxTokensPerBatch ?? 16384;
  if (!(maxTok >= 1)) throw new Error(`maxTokensPerBatch must be >= 1; got ${maxTok}`);
  const exclude = new Set(opts.excludeSpecial ?? []);
  cells.forEach((cell, i) => {
    if (cell.length > c.max_position_embeddings) {
      throw new Error(`cell ${i} has ${cell.length} tokens, more than max_position_embeddings (${c.max_position_embeddings})`);
    }
  });
  const out = new Float32Array(cells.length * H);
  const batches = planBatches(
    cells.map((x) => x.length),
    maxTok,
  );
  const numLayers = c.num_hidden_layers + layer;
  let done = 0;
  /** Pooled states `[B, H]` of the cells `idx` (caller reads and disposes). */
  const forward = (idx: number[]): tf.Tensor => {
    const rows = padRows(
      idx.map((i) => cells[i]),
      opts.values ? idx.map((i) => opts.values![i]) : undefined,
      c.pad_token_id,
    );
    const { batch: B, seqLen: L } = rows;
    const poolW = new Float32Array(B * L);
    idx.forEach((ci, b) => {
      const cell = cells[ci];
      for (let t = 0; t < cell.length; t++) if (pool === "cls" ? t === 0 : !exclude.has(cell[t])) poolW[b * L + t] = 1;
    });
    return tf.tidy(() => {
      const batch = toModelBatch(rows);
      const f = encoder.forward(batch, { training: false, numLayers }); // [B, L, H] (+ a learned <cls>'s state [B, H])
      // the same pooling as the cell-level objectives train (src/model/cell-heads.ts)
      return poolCells(tf.reshape(f.lastHiddenState, [B * L, H]) as tf.Tensor2D, tf.tensor2d(poolW, [B, L]), pool, f.cls);
    });
  };
  /** Put batch `idx`'s pooled rows `v` (`[B * H]`) into the output and report progress. */
  const store = (idx: number[], v: Float32Array): void => {
    idx.forEach((ci, b) => out.set(v.subarray(b * H, (b + 1) * H), ci * H));
    done += idx.length;
    opts.onProgress?.(done, cells.length);
  };
  return { batches, forward, store, out };
}
