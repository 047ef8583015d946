/**
 * Worker-thread side of {@link sumParallel} (`./parallel.ts`): builds its model (checkpoint or fresh
 * weights) in its own TensorFlow.js backend, sums the one job it is sent (queued on its port while
 * it starts) and posts the sums back.
 * Runs only inside a worker started by `./parallel.ts`.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { GrnWorkerData, GrnWorkerJob } from "./parallel.js";

async function serve(): Promise<void> {
  const d = workerData as GrnWorkerData;
  const { initBackend } = await import("../backend.js");
  const { modelFromSource, sumOn } = await import("./parallel.js");
  const { attentionModelOf } = await import("./attention.js");
  await initBackend(d.backend);
  const model = await modelFromSource(d.source);
  const am = attentionModelOf(model);
  parentPort!.on("message", (job: GrnWorkerJob) => {
    try {
      const result = sumOn(am, job);
      const buffers = ("qs" in result ? [result.count, ...result.qs, ...result.ks] : [result.pairCount, ...result.sums]).map((a) => a.buffer as ArrayBuffer);
      parentPort!.postMessage({ result }, buffers);
    } catch (e) {
      parentPort!.postMessage({ error: (e as Error).message });
    }
  });
}

if (!isMainThread && parentPort && (workerData as GrnWorkerData | undefined)?.source) {
  serve().catch((e) => parentPort!.postMessage({ fatal: (e as Error).message }));
}
