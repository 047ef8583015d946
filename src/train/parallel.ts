/**
 * Data-parallel training on several cores (DDP-style) with `worker_threads`: the TensorFlow.js
 * wasm backend runs one thread per backend instance in Node, so a second core needs a second
 * backend, i.e. a worker thread with its own replica of the model.
 *
 * One micro-batch is collated by the objective on the main thread (as with one worker), then split
 * by cells into shards of about equal token counts ({@link shardBatch}). Rank 0 (the main thread)
 * computes shard 0 while the workers compute the others. Each shard's loss is the mean over its
 * loss positions (masked tokens for MLM), so the shards are combined weighted by their share of them:
 *
 *   loss = Σ_k (n_k / n) · loss_k,   grad = Σ_k (n_k / n) · grad_k
 *
 * which is the loss and gradient of the whole micro-batch (cells never interact in BERT; padding
 * is masked out), up to float summation order. Clipping and AdamW then run on the main thread as
 * before, and {@link DataParallel.syncWeights} broadcasts the updated weights to the replicas
 * (one flat `Float32Array` per worker, transferred, not copied). Broadcast vs. every rank applying
 * the same AdamW update, measured on the Geneformer V1 6-layer model (10.3 M parameters, wasm):
 * the broadcast costs ~20 ms (copy out of the backend, `assign` in the worker) after AdamW's ~145
 * ms; replaying AdamW would send the combined gradient instead (the same ~20 ms) and run the same
 * ~145 ms on every replica at the same time, so it saves nothing, needs the AdamW moments on every
 * replica (2 × 41 MB each) and lets replicas drift apart by rounding. Hence the broadcast.
 *
 * Workers must be stopped with {@link DataParallel.dispose} (the training loop does so in
 * `finally`); a live worker keeps the process running.
 */
import type { Worker } from "node:worker_threads";
import { startWorker } from "../threads.js";
import * as tf from "@tensorflow/tfjs-core";
import type { BackendChoice } from "../backend.js";
import type { CellModel, LossAndGrads } from "../model/bert.js";
import {
  batchBuffers,
  batchTensors,
  disposeBatch,
  type GradShard,
  type GradWorkerData,
  type GradWorkerMessage,
  type GradWorkerReply,
  tensorFromReusedBuffer,
} from "./grad-protocol.js";
import type { CollatedBatch } from "./objectives/types.js";
import { cellsOf } from "../model/cell-heads.js";

export { tensorFromReusedBuffer, type GradShard };

/** Result of {@link DataParallel.lossAndGrads}. */
export interface CombinedGrads {
  /** Mean loss over all shards' loss positions (e.g. masked-token cross-entropy, nats). */
  loss: number;
  /** Gradient per weight name (internal layout, as `model.weights`); the caller disposes them. */
  grads: Map<string, tf.Tensor>;
  /** Loss positions over all shards (masked positions for MLM). */
  nMasked: number;
  /** Each named loss term (a model with cell-level terms), combined over the shards like the loss. */
  terms?: Record<string, number>;
}

/**
 * Dropout seed of shard `k` of a micro-batch whose seed is `seed`: shard 0 keeps `seed` (so one
 * shard is exactly the single-thread run), the others get a distinct, deterministic seed.
 * @returns an unsigned 32-bit integer
 */
export function shardDropoutSeed(seed: number, k: number): number {
  return k === 0 ? seed : (seed ^ Math.imul(k, 0x9e3779b1)) >>> 0;
}

/**
 * Cells `[a, z)` of a collated batch as a batch of their own, re-padded to `seqLen` (≥ their longest
 * row) with every per-token, per-position and per-cell array cut and re-indexed: exactly the batch
 * the objective would have collated from those cells with the same draws. A batch with several rows
 * per cell (`cellBlocks`, the contrastive views) keeps them: block j of the shard is cells `[a, z)`
 * of block j.
 */
export function sliceCells(mb: CollatedBatch, a: number, z: number, seqLen: number, realTokens: number): CollatedBatch {
  const L = mb.seqLen;
  const blocks = mb.cellBlocks ?? 1, B = cellsOf(mb.batch, mb), n = z - a;
  const inputIds = new Int32Array(blocks * n * seqLen);
  const attentionMask = new Float32Array(blocks * n * seqLen);
  const values = mb.values ? new Float32Array(blocks * n * seqLen) : undefined;
  for (let j = 0; j < blocks; j++) {
    for (let b = a; b < z; b++) {
      const src = (j * B + b) * L, dst = (j * n + b - a) * seqLen;
      inputIds.set(mb.inputIds.subarray(src, src + seqLen), dst);
      attentionMask.set(mb.attentionMask.subarray(src, src + seqLen), dst);
      values?.set(mb.values!.subarray(src, src + seqLen), dst);
    }
  }
  // positions are ascending and in block 0: the shard's are one contiguous run
  const { run: [p0, p1], positions } = shardPositions(mb.positions, a, z, L, seqLen);
  const out: CollatedBatch = { batch: blocks * n, seqLen, inputIds, attentionMask, positions, realTokens };
  if (values) out.values = values;
  if (mb.labels) out.labels = mb.labels.slice(p0, p1);
  if (mb.targets) out.targets = mb.targets.slice(p0, p1);
  if (mb.cellScalars) out.cellScalars = mb.cellScalars.slice(a, z);
  if (mb.cellLibrary) out.cellLibrary = mb.cellLibrary.slice(a, z);
  if (mb.cellBatch) out.cellBatch = mb.cellBatch.slice(a, z);
  if (mb.cellCounts) {
    const G = mb.cellCounts.length / B;
    out.cellCounts = mb.cellCounts.slice(a * G, z * G);
  }
  if (mb.mvcPositions) {
    const m = shardPositions(mb.mvcPositions, a, z, L, seqLen);
    out.mvcPositions = m.positions;
    out.mvcGenes = mb.mvcGenes!.slice(...m.run);
    out.mvcTargets = mb.mvcTargets!.slice(...m.run);
  }
  if (mb.cellBlocks !== undefined) out.cellBlocks = mb.cellBlocks;
  if (mb.viewBlocks) out.viewBlocks = [mb.viewBlocks[0], mb.viewBlocks[1]];
  if (mb.cellGroups) out.cellGroups = mb.cellGroups.slice(a, z);
  // a shard's cell terms are scaled to the micro-batch's (src/model/cell-heads.ts)
  if (mb.unitTotals) out.unitTotals = mb.unitTotals;
  return out;
}

/**
 * The flat positions of cells `[a, z)` among a batch's ascending positions (one contiguous run
 * `[p0, p1)`), re-indexed to a shard of `seqLen` tokens per cell.
 */
function shardPositions(all: Int32Array, a: number, z: number, L: number, seqLen: number): { run: [number, number]; positions: Int32Array } {
  let p0 = 0;
  while (p0 < all.length && all[p0] < a * L) p0++;
  let p1 = p0;
  while (p1 < all.length && all[p1] < z * L) p1++;
  const positions = new Int32Array(p1 - p0);
  for (let j = p0; j < p1; j++) {
    const b = Math.floor(all[j] / L), i = all[j] % L;
    positions[j - p0] = (b - a) * seqLen + i;
  }
  return { run: [p0, p1], positions };
}

/**
 * Split a collated batch by cells into at most `n` shards of consecutive cells with about equal
 * real-token counts (cut points nearest to `k · tokens / n`; every shard has at least one cell).
 * Each shard is re-padded to its own longest row and its loss positions re-indexed
 * ({@link sliceCells}), so a shard is exactly the batch the objective would have collated from its
 * cells with the same draws. A batch with contrastive groups (`cellGroups`) is cut only between
 * groups, so every shard holds whole groups and its contrastive term is the one the whole batch has
 * for those cells: the combined loss and gradient do not depend on `n` (a batch of one group is one shard).
 *
 * @param mb a collated batch (right-padded; attention mask 1 on real tokens)
 * @param n wanted shards (≥ 1); a batch with fewer cells (groups) gives one shard per cell (group)
 * @param dropoutSeed the micro-batch's dropout seed; shard k gets {@link shardDropoutSeed}
 * @returns between 1 and `n` shards, in cell order
 */
export function shardBatch(mb: CollatedBatch, n: number, dropoutSeed: number, training = true): GradShard[] {
  const L = mb.seqLen, blocks = mb.cellBlocks ?? 1, B = cellsOf(mb.batch, mb);
  // each row's length; a cell's tokens are those of its rows
  const rowLen = new Int32Array(mb.batch);
  for (let r = 0; r < mb.batch; r++) {
    let len = 0;
    for (let i = 0; i < L; i++) len += mb.attentionMask[r * L + i] > 0 ? 1 : 0;
    rowLen[r] = len;
  }
  const prefix = new Float64Array(B + 1);
  for (let b = 0; b < B; b++) {
    let t = 0;
    for (let j = 0; j < blocks; j++) t += rowLen[j * B + b];
    prefix[b + 1] = prefix[b] + t;
  }
  // where a shard may start: any cell, or with contrastive groups the first cell of a group
  const starts = [0];
  for (let b = 1; b < B; b++) if (!mb.cellGroups || mb.cellGroups[b] !== mb.cellGroups[b - 1]) starts.push(b);
  starts.push(B);
  const units = starts.length - 1;
  const parts = Math.max(1, Math.min(n, units));
  const cutIdx = [0];
  for (let k = 1; k < parts; k++) {
    const target = (prefix[B] * k) / parts;
    // the cut must leave one unit for every shard before and after it
    let best = cutIdx[k - 1] + 1;
    for (let c = best + 1; c <= units - (parts - k); c++) {
      if (Math.abs(prefix[starts[c]] - target) < Math.abs(prefix[starts[best]] - target)) best = c;
    }
    cutIdx.push(best);
  }
  cutIdx.push(units);
  const shards: GradShard[] = [];
  for (let k = 0; k < parts; k++) {
    const a = starts[cutIdx[k]], z = starts[cutIdx[k + 1]];
    let seqLen = 0;
    for (let j = 0; j < blocks; j++) for (let b = a; b < z; b++) seqLen = Math.max(seqLen, rowLen[j * B + b]);
    shards.push({ batch: sliceCells(mb, a, z, seqLen, prefix[z] - prefix[a]), dropoutSeed: shardDropoutSeed(dropoutSeed, k), training });
  }
  return shards;
}

/** Σ_k w_k · terms_k per term name over the shards that have terms (undefined when none has). */
function combineTerms(parts: ({ w: number; terms: Record<string, number> } | undefined)[]): Record<string, number> | undefined {
  let out: Record<string, number> | undefined;
  for (const p of parts) {
    if (!p) continue;
    out ??= {};
    for (const [k, v] of Object.entries(p.terms)) out[k] = (out[k] ?? 0) + p.w * v;
  }
  return out;
}

interface Pending {
  resolve: (r: { loss: number; grads: Float32Array; terms?: Record<string, number> }) => void;
  reject: (e: Error) => void;
}

/**
 * Owns `workers − 1` worker threads, each with a replica of a model, and computes the loss and
 * gradients of a sharded micro-batch across them and the main thread.
 *
 * ```ts
 * const dp = await DataParallel.start(model, { workers: 2, backend: "wasm" });
 * try {
 *   dp.syncWeights();                      // replicas = main weights
 *   const { loss, grads } = await dp.lossAndGrads(shardBatch(mb, dp.size, seed));
 *   optimizer.applyGradients(grads, lr);   // on the main thread
 *   dp.syncWeights();                      // after every update
 * } finally {
 *   await dp.dispose();
 * }
 * ```
 */
export class DataParallel {
  /** Worker threads alive in this process, over all instances (tests check it returns to 0). */
  static live = 0;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failure: Error | undefined;
  private disposed = false;
  private readonly total: number;
  /** Buffers handed back by each worker, reused so no step allocates 4 bytes × parameters afresh. */
  private readonly spareWeights: (Float32Array | undefined)[];
  private readonly spareGrads: (Float32Array | undefined)[];

  private constructor(
    private readonly model: CellModel,
    private readonly workers: Worker[],
  ) {
    this.total = [...model.weights.values()].reduce((s, v) => s + v.size, 0);
    this.spareWeights = workers.map(() => undefined);
    this.spareGrads = workers.map(() => undefined);
    workers.forEach((w, i) => {
      w.on("message", (m: GradWorkerReply) => {
        if ("weightsBack" in m) {
          this.spareWeights[i] = m.weightsBack;
          return;
        }
        if (!("id" in m)) return;
        const job = this.pending.get(m.id);
        if (!job) return;
        this.pending.delete(m.id);
        if ("error" in m) job.reject(new Error(`gradient worker: ${m.error}`));
        else job.resolve({ loss: m.loss, grads: m.grads, terms: m.terms });
      });
      w.on("error", (e) => this.fail(new Error(`gradient worker failed: ${e.message}`)));
      w.on("exit", (code) => {
        if (!this.disposed) this.fail(new Error(`gradient worker exited unexpectedly (code ${code})`));
      });
    });
  }

  /**
   * Start `workers − 1` worker threads with replicas of `model` (same config; weights are sent by
   * {@link syncWeights}) and wait until they are ready.
   * @param opts.workers ranks including the main thread (≥ 1; 1 starts no thread)
   * @param opts.backend backend each worker initialises (use the main thread's)
   * @throws Error when a worker cannot start (the others are stopped)
   */
  static async start(model: CellModel, opts: { workers: number; backend: BackendChoice }): Promise<DataParallel> {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new Error(`workers must be an integer >= 1, got ${opts.workers}`);
    const data: GradWorkerData = {
      config: model.config,
      spec: model.spec,
      backend: opts.backend,
      names: [...model.weights.keys()],
    };
    const workers: Worker[] = [];
    try {
      await Promise.all(
        Array.from({ length: opts.workers - 1 }, () => {
          const w = startWorker(import.meta.url, "./grad-worker", data);
          workers.push(w);
          DataParallel.live++;
          w.once("exit", () => DataParallel.live--);
          return new Promise<void>((resolve, reject) => {
            const onMsg = (m: GradWorkerReply) => {
              if ("fatal" in m) reject(new Error(`gradient worker failed to start: ${m.fatal}`));
              else if ("ready" in m) {
                w.off("message", onMsg);
                resolve();
              }
            };
            w.on("message", onMsg);
            w.once("error", reject);
            w.once("exit", (code) => reject(new Error(`gradient worker exited during start (code ${code})`)));
          });
        }),
      );
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new DataParallel(model, workers);
  }

  /** Ranks: the main thread plus the worker threads. */
  get size(): number {
    return this.workers.length + 1;
  }

  /**
   * Send the main model's current weights to every replica (call once after start and after every
   * optimizer step). Returns at once: each worker applies them before its next job.
   */
  syncWeights(): void {
    if (this.workers.length === 0) return;
    if (this.failure) throw this.failure;
    // buffers are transferred (not copied) and come back from the worker after use
    const bufs = this.workers.map((_, i) => this.takeSpare(this.spareWeights, i));
    let off = 0;
    for (const v of this.model.weights.values()) {
      bufs[0].set(v.dataSync() as Float32Array, off);
      off += v.size;
    }
    // fill every copy before posting any: a posted buffer is transferred (detached here)
    for (let i = 1; i < bufs.length; i++) bufs[i].set(bufs[0]);
    this.workers.forEach((w, i) => {
      const msg: GradWorkerMessage = { type: "weights", flat: bufs[i] };
      w.postMessage(msg, [bufs[i].buffer as ArrayBuffer]);
    });
  }

  private takeSpare(pool: (Float32Array | undefined)[], i: number): Float32Array {
    const b = pool[i];
    pool[i] = undefined;
    // a fresh buffer of this size costs ~150 ms of page faults for the 6-layer model; reuse when we can
    return b && b.length === this.total ? b : new Float32Array(this.total);
  }

  /**
   * Loss and gradients of a micro-batch given as shards (from {@link shardBatch}): shard 0 on the
   * main thread, shard k on worker k − 1, concurrently; each shard's loss is weighted by its share
   * of the loss positions, and shards without any are skipped (weight 0). The replicas must hold the main model's weights ({@link syncWeights}).
   * @returns the combined loss and gradients (= those of the whole micro-batch)
   * @throws Error with more shards than {@link size}, when no shard has a loss position, or when a
   *   worker fails
   */
  async lossAndGrads(shards: GradShard[]): Promise<CombinedGrads> {
    if (this.failure) throw this.failure;
    if (this.disposed) throw new Error("DataParallel: used after dispose()");
    if (shards.length > this.size) throw new Error(`${shards.length} shards for ${this.size} ranks`);
    const counts = shards.map((s) => s.batch.positions.length);
    const nMasked = counts.reduce((a, b) => a + b, 0);
    if (nMasked === 0) throw new Error("the micro-batch has no position with a loss term (e.g. no masked token)");
    // send the worker shards first, so they run while the main thread computes shard 0
    const remote = shards.map((s, k) => (k === 0 || counts[k] === 0 ? undefined : this.submit(k - 1, s)));
    // a rejected job must not go unhandled while the main thread computes
    for (const r of remote) r?.catch(() => undefined);
    let local: LossAndGrads | undefined;
    try {
      if (counts[0] > 0) {
        const b = shards[0].batch;
        const t = batchTensors(b);
        try {
          local = this.model.lossAndGrads(t, b, { training: shards[0].training, dropoutSeed: shards[0].dropoutSeed });
        } finally {
          disposeBatch(t);
        }
      }
      const results = await Promise.all(remote);
      let loss = 0;
      const grads = new Map<string, tf.Tensor>();
      const parts = [local, ...results.slice(1)];
      parts.forEach((r, k) => r && (loss += (counts[k] / nMasked) * r.loss));
      const terms = combineTerms(parts.map((r, k) => r?.terms && { w: counts[k] / nMasked, terms: r.terms }));
      let off = 0;
      for (const [name, v] of this.model.weights) {
        if (!v.trainable) {
          // a fixed table (frozen gene embeddings, genomic positions): no gradient, no update
          off += v.size;
          continue;
        }
        const g = tf.tidy(() => {
          const terms: tf.Tensor[] = [];
          const w0 = counts[0] / nMasked;
          const g0 = local?.grads.get(name);
          if (g0) terms.push(w0 === 1 ? tf.clone(g0) : tf.mul(g0, w0));
          for (let k = 1; k < shards.length; k++) {
            const r = results[k];
            if (!r) continue;
            const gk = tensorFromReusedBuffer(r.grads.subarray(off, off + v.size), v.shape);
            const wk = counts[k] / nMasked;
            terms.push(wk === 1 ? gk : tf.mul(gk, wk));
          }
          return terms.length === 0 ? tf.zerosLike(v) : terms.length === 1 ? terms[0] : tf.addN(terms);
        });
        grads.set(name, g);
        off += v.size;
      }
      results.forEach((r, k) => {
        if (r) this.spareGrads[k - 1] = r.grads;
      });
      return { loss, grads, nMasked, ...(terms ? { terms } : {}) };
    } finally {
      if (local) tf.dispose([...local.grads.values()]);
    }
  }

  private submit(i: number, shard: GradShard): Promise<{ loss: number; grads: Float32Array; terms?: Record<string, number> }> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const gradBuf = this.takeSpare(this.spareGrads, i);
      const msg: GradWorkerMessage = { type: "job", id, shard, gradBuf };
      // the shard's arrays are built per step by shardBatch: hand them over instead of copying
      const transfer = [...batchBuffers(shard.batch), gradBuf.buffer as ArrayBuffer];
      this.workers[i].postMessage(msg, transfer);
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /** Stop every worker thread (idempotent). Pending jobs are rejected. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.fail(new Error("DataParallel: disposed"));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
