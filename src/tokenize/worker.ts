/**
 * Worker-thread side of {@link TokenizeWorkers}: opens the same input, builds the same tokenizer, and
 * tokenizes every `stride`-th block of cells (its `phase`), posting each block's flat result in order.
 * At most `window` blocks are in flight (the main thread sends a credit per block it has written),
 * so memory stays bounded whatever the file size. Runs only inside a worker started by `./parallel.ts`.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { OpenCountsOptions } from "../data/open.js";
import type { ChunkSelection } from "../data/types.js";
import type { GeneformerTokenizeOptions } from "./geneformer.js";

/** Data given to each tokenizer worker. */
export interface TokenizeWorkerData {
  input: string;
  open: OpenCountsOptions & { obsTsv?: string };
  tokenizer: Pick<GeneformerTokenizeOptions, "modelVersion" | "idColumn" | "medians" | "encoding" | "nBins" | "seed" | "topGenes">;
  chunkSize: number;
  select: ChunkSelection;
  /** blocks posted ahead of the main thread's credits. */
  window: number;
}

async function serve(): Promise<void> {
  const d = workerData as TokenizeWorkerData;
  const port = parentPort!;
  const { openCounts } = await import("../data/open.js");
  const { GeneformerTokenizer } = await import("./geneformer.js");
  const source = await openCounts(d.input, d.open);
  let credits = d.window;
  let wake: (() => void) | undefined;
  port.on("message", () => {
    credits++;
    wake?.();
  });
  try {
    const tk = new GeneformerTokenizer(source, d.tokenizer);
    for (const chunk of source.chunks(d.chunkSize, d.select)) {
      const f = tk.encodeChunk(chunk);
      while (credits === 0) await new Promise<void>((r) => (wake = r));
      credits--;
      const buffers = [f.ids, f.offsets, f.obsRows, f.values, f.nCounts, ...(f.counts ? [f.counts] : [])].map((a) => a.buffer as ArrayBuffer);
      port.postMessage({ chunk: f }, [...new Set(buffers)]);
    }
    port.postMessage({ done: true });
  } finally {
    source.close();
  }
}

if (!isMainThread && parentPort) {
  serve().catch((e) => parentPort!.postMessage({ error: (e as Error).message ?? String(e) }));
}
