/**
 * Attention extraction on several cores: `worker_threads`, each with its own TensorFlow.js backend
 * and its own copy of the model (tfjs-wasm runs one thread per backend in Node; see
 * `src/embed/parallel.ts`). Both methods are sums over cells ({@link QkSums}, {@link AttentionSums}),
 * so the cells are dealt to the threads (sorted by length, round robin, so each gets a similar
 * load), every thread sums over its own cells, and the sums are added: the result equals the
 * single-thread one up to float64 rounding of the order of additions. The main thread works on one
 * share itself while the workers run.
 */
import type { Worker } from "node:worker_threads";
import type { BackendChoice } from "../backend.js";
import type { CellModel, ModelSpec } from "../model/bert.js";
import type { BertConfig } from "../model/config.js";
import { startWorker } from "../threads.js";
import { addAttentionSums, addQkSums, type AttentionModel, type AttentionSums, attentionSums, type CellInput, type QkSums, qkSums } from "./attention.js";
import { batchBuilder } from "./inputs.js";

/** Where a worker gets its model: a checkpoint folder, or fresh weights of a config (the untrained model). */
export type ModelSource = { checkpoint: string } | { config: BertConfig; spec: Omit<ModelSpec, "architecture">; seed: number };

/** What one extraction job sums (method a or b). */
export type SumJob = { method: "qk" } | { method: "attention"; perHead: boolean; headWeights?: Float64Array };

/** Data given to each worker. */
export interface GrnWorkerData {
  source: ModelSource;
  backend: BackendChoice;
}

/** Message to a worker: sum over these cells. */
export interface GrnWorkerJob {
  job: SumJob;
  n: number;
  cells: CellInput[];
  ids: Int32Array[];
  values?: Float32Array[];
  padId: number;
  maxTokensPerBatch?: number;
}

/** Build the model of a {@link ModelSource} (in a worker or the main thread). */
export async function modelFromSource(src: ModelSource): Promise<CellModel> {
  if ("checkpoint" in src) {
    const { readCheckpoint } = await import("../model/checkpoint.js");
    return readCheckpoint(src.checkpoint).model;
  }
  const { buildModel } = await import("../model/factory.js");
  return buildModel(src.config, src.spec, { seed: src.seed });
}

/** Sum one job over some cells on this thread. */
export function sumOn(am: AttentionModel, w: GrnWorkerJob, onProgress?: (done: number) => void): QkSums | AttentionSums {
  const makeBatch = batchBuilder(w.ids, w.values, w.padId);
  const opts = { maxTokensPerBatch: w.maxTokensPerBatch, onProgress };
  if (w.job.method === "qk") return qkSums(am, w.cells, w.n, makeBatch, opts);
  return attentionSums(am, w.cells, w.n, makeBatch, { ...opts, perHead: w.job.perHead, headWeights: w.job.headWeights });
}

/** Cells dealt to `k` shares: sorted by length (longest first), round robin. */
export function dealCells(lengths: readonly number[], k: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const shares: number[][] = Array.from({ length: k }, () => []);
  order.forEach((c, i) => shares[i % k].push(c));
  for (const s of shares) s.sort((a, b) => a - b);
  return shares;
}

/**
 * Sum a job over all cells with `threads` threads (the main thread + threads − 1 workers).
 * @param am the main thread's model (already loaded).
 * @param onProgress called with the cells done (the main thread's share scaled to the whole).
 * @throws Error when a worker fails to start or to sum (all workers are stopped).
 */
export async function sumParallel(
  am: AttentionModel,
  source: ModelSource,
  w: GrnWorkerJob,
  threads: number,
  backend: BackendChoice,
  onProgress?: (done: number, total: number) => void,
): Promise<QkSums | AttentionSums> {
  const total = w.cells.length;
  const k = Math.max(1, Math.min(threads, total));
  if (k === 1) return sumOn(am, w, (d) => onProgress?.(d, total));
  const shares = dealCells(w.cells.map((c) => c.length), k);
  const part = (idx: number[]): GrnWorkerJob => ({
    ...w,
    cells: idx.map((i) => w.cells[i]),
    ids: idx.map((i) => w.ids[i]),
    ...(w.values ? { values: idx.map((i) => w.values![i]) } : {}),
  });
  const workers: Worker[] = [];
  try {
    const results = shares.slice(1).map((idx) => {
      const worker = startWorker(import.meta.url, "./worker", { source, backend } satisfies GrnWorkerData);
      workers.push(worker);
      // posted at once: the port queues it until the worker listens, and the main thread is busy
      // with its own share (it handles no message) until it is done
      worker.postMessage(part(idx));
      return new Promise<QkSums | AttentionSums>((resolve, reject) => {
        worker.on("error", reject);
        worker.on("message", (m: { fatal?: string; error?: string; result?: QkSums | AttentionSums }) => {
          if (m.fatal) return reject(new Error(`grn worker failed to start: ${m.fatal}`));
          if (m.error) return reject(new Error(`grn worker: ${m.error}`));
          if (m.result) resolve(m.result);
        });
      });
    });
    // a rejected worker promise must not go unhandled while the main thread computes
    for (const r of results) r.catch(() => undefined);
    const mainShare = shares[0].length;
    const mine = sumOn(am, part(shares[0]), (d) => onProgress?.(Math.min(total, Math.round((d / mainShare) * total)), total));
    for (const r of await Promise.all(results)) {
      if ("qs" in mine) addQkSums(mine, r as QkSums);
      else addAttentionSums(mine, r as AttentionSums);
    }
    onProgress?.(total, total);
    return mine;
  } finally {
    await Promise.all(workers.map((x) => x.terminate()));
  }
}
