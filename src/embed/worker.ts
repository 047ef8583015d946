/**
 * Worker-thread side of {@link embedCellsParallel}: loads the checkpoint into its own TensorFlow.js
 * backend instance (wasm threads do not start in Node, so parallelism comes from worker_threads),
 * then embeds the batches it is sent. Runs only inside a worker started by `./parallel.ts`.
 */
import type { Pooling } from "../model/cell-heads.js";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { BackendChoice } from "../backend.js";

/** Data given to each worker. */
export interface EmbedWorkerData {
  checkpoint: string;
  backend: BackendChoice;
  layer: number;
  pool: Pooling;
  excludeSpecial: number[];
}

/** Message to a worker: embed these cells (one planned batch). */
export interface EmbedWorkerJob {
  id: number;
  cells: Int32Array[];
  /** per-token values aligned with `cells` (bin index or raw count), for value-keeping encodings. */
  values?: Float32Array[];
}

async function serve(): Promise<void> {
  const d = workerData as EmbedWorkerData;
  const { initBackend } = await import("../backend.js");
  const { readCheckpoint } = await import("../model/checkpoint.js");
  const { embedCells } = await import("./embed.js");
  await initBackend(d.backend);
  const { model } = readCheckpoint(d.checkpoint);
  parentPort!.on("message", (job: EmbedWorkerJob | "close") => {
    if (job === "close") {
      model.dispose();
      parentPort!.close();
      return;
    }
    try {
      const data = embedCells(model, job.cells, {
        layer: d.layer,
        pool: d.pool,
        excludeSpecial: d.excludeSpecial,
        values: job.values,
        maxTokensPerBatch: Number.MAX_SAFE_INTEGER, // the batch was planned by the main thread
      });
      parentPort!.postMessage({ id: job.id, data }, [data.buffer as ArrayBuffer]);
    } catch (e) {
      parentPort!.postMessage({ id: job.id, error: (e as Error).message });
    }
  });
  parentPort!.postMessage({ ready: true });
}

if (!isMainThread && parentPort && (workerData as EmbedWorkerData | undefined)?.checkpoint) {
  serve().catch((e) => parentPort!.postMessage({ fatal: (e as Error).message }));
}
