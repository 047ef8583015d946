/**
 * Worker-thread side of parallel.ts: runs exact kNN graphs, UMAP layouts and row types of the all-pairs scan sent by
 * the main thread. Runs only inside a worker started by `AssessPool`; each worker has its own
 * TensorFlow.js backend (wasm runs one thread per backend in Node, so parallelism comes from workers).
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { BackendChoice } from "../backend.js";
import type { KnnGraph } from "./knn.js";
import type { MeasureSpec, PairMeasure, PairScanner, TypeBlock } from "./pairs.js";
import type { UmapOptions } from "./umap.js";

/** Messages from the main thread (each answered with `{ id, ... }` or `{ id, error }`). */
export type AssessJob =
  | { id: number; type: "knn"; x: Float32Array; n: number; d: number; k: number; r0: number; r1: number }
  | { id: number; type: "umap"; knn: KnnGraph; opts: Omit<UmapOptions, "onEpoch"> }
  | { id: number; type: "pairs-setup"; blocks: TypeBlock[]; specs: MeasureSpec[]; joints: [string, string][]; bins1d?: number; bins2d?: number; batchCodes?: Int32Array }
  | { id: number; type: "pairs-row"; bi: number }
  | { id: number; type: "pairs-finish" };

async function serve(): Promise<void> {
  const { initBackend } = await import("../backend.js");
  const { umapFromKnn } = await import("./umap.js");
  const { exactKnnRows } = await import("./knn.js");
  const pairs = await import("./pairs.js");
  await initBackend((workerData as { backend: BackendChoice }).backend);
  let scanner: PairScanner | undefined;
  let measures: PairMeasure[] = [];
  parentPort!.on("message", (job: AssessJob | "close") => {
    if (job === "close") {
      measures.forEach((m) => m.dispose?.());
      parentPort!.close();
      return;
    }
    try {
      if (job.type === "knn") {
        const g = exactKnnRows(job.x, job.n, job.d, job.r0, job.r1, { k: job.k });
        parentPort!.postMessage({ id: job.id, part: g }, [g.indices.buffer as ArrayBuffer, g.distances.buffer as ArrayBuffer]);
      } else if (job.type === "umap") {
        const coords = umapFromKnn(job.knn, job.opts);
        parentPort!.postMessage({ id: job.id, coords }, [coords.buffer as ArrayBuffer]);
      } else if (job.type === "pairs-setup") {
        measures = job.specs.map(pairs.measureFromSpec);
        scanner = new pairs.PairScanner(job.blocks, measures, job.joints, { bins1d: job.bins1d, bins2d: job.bins2d, batchCodes: job.batchCodes });
        parentPort!.postMessage({ id: job.id });
      } else if (job.type === "pairs-row") {
        parentPort!.postMessage({ id: job.id, row: scanner!.row(job.bi) });
      } else {
        const counts = scanner!.counts;
        measures.forEach((m) => m.dispose?.());
        measures = [];
        scanner = undefined;
        parentPort!.postMessage({ id: job.id, counts });
      }
    } catch (e) {
      parentPort!.postMessage({ id: job.id, error: (e as Error).stack ?? String(e) });
    }
  });
  parentPort!.postMessage({ ready: true });
}

if (!isMainThread && parentPort) {
  serve().catch((e) => parentPort!.postMessage({ fatal: String((e as Error)?.message ?? e) }));
}
