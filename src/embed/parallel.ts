/**
 * Cell embeddings on several cores: `worker_threads`, each with its own TensorFlow.js backend and
 * its own copy of the model (design notes: wasm threads do not start in Node; embedding is
 * embarrassingly parallel). The main thread plans length-sorted batches exactly as
 * {@link embedCells} does and hands them out to idle workers, so the result equals the
 * single-thread one (each cell's embedding depends only on the cell).
 */
import type { Worker } from "node:worker_threads";
import { startWorker } from "../threads.js";
import type { BackendChoice } from "../backend.js";
import { type EmbedOptions, planBatches } from "./embed.js";
import type { EmbedWorkerData, EmbedWorkerJob } from "./worker.js";


/**
 * Embed cells with `workers` worker threads.
 * @param checkpoint checkpoint folder each worker loads
 * @param cells token ids per cell (no padding); `opts.values` their per-token values (value-keeping
 *   encodings), sent to the workers with the ids
 * @param hidden hidden size (row width of the result)
 * @returns float32 `[nCells * hidden]` in input order, equal to {@link embedCells}' result
 * @throws Error if a worker fails to start or to embed a batch (all workers are stopped).
 */
export async function embedCellsParallel(
  checkpoint: string,
  cells: Int32Array[],
  hidden: number,
  opts: EmbedOptions & { workers: number; backend?: BackendChoice },
): Promise<Float32Array> {
  const batches = planBatches(
    cells.map((c) => c.length),
    opts.maxTokensPerBatch ?? 16384,
  );
  const out = new Float32Array(cells.length * hidden);
  if (batches.length === 0) return out;
  const nWorkers = Math.max(1, Math.min(opts.workers, batches.length));
  const data: EmbedWorkerData = {
    checkpoint,
    backend: opts.backend ?? "wasm",
    layer: opts.layer ?? -1,
    pool: opts.pool ?? "mean",
    excludeSpecial: opts.excludeSpecial ?? [],
  };
  const workers: Worker[] = [];
  let next = 0, done = 0, cellsDone = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (e: Error) => reject(e);
      const send = (w: Worker) => {
        if (next >= batches.length) return;
        const id = next++;
        const job: EmbedWorkerJob = {
          id,
          cells: batches[id].map((i) => cells[i]),
          ...(opts.values ? { values: batches[id].map((i) => opts.values![i]) } : {}),
        };
        w.postMessage(job);
      };
      for (let k = 0; k < nWorkers; k++) {
        const w = startWorker(import.meta.url, "./worker", data);
        workers.push(w);
        w.on("error", fail);
        w.on("message", (m: { ready?: boolean; fatal?: string; id?: number; data?: Float32Array; error?: string }) => {
          if (m.fatal) return fail(new Error(`embedding worker failed to start: ${m.fatal}`));
          if (m.ready) return send(w);
          if (m.error) return fail(new Error(`embedding worker: ${m.error}`));
          const idx = batches[m.id!];
          idx.forEach((ci, b) => out.set(m.data!.subarray(b * hidden, (b + 1) * hidden), ci * hidden));
          cellsDone += idx.length;
          opts.onProgress?.(cellsDone, cells.length);
          if (++done === batches.length) resolve();
          else send(w);
        });
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return out;
}
