/**
 * Tokenizing on several cores: worker threads each open the input and tokenize every W-th block of
 * cells (worker j takes blocks j, j + W, ...; the main thread keeps block 0, W, ...), and the main
 * thread writes the blocks in cell order. Each block's tokens depend only on its cells, so the output
 * equals the one-thread output byte for byte (tested).
 */
import type { Worker } from "node:worker_threads";
import { startWorker } from "../threads.js";
import type { FlatTokenizedChunk } from "./geneformer.js";
import type { TokenizeWorkerData } from "./worker.js";

type Msg = { chunk?: FlatTokenizedChunk; done?: boolean; error?: string; fatal?: string };

/** One worker's blocks, in order, as a pull stream. */
class WorkerStream {
  private readonly queue: Msg[] = [];
  private waiting: ((m: Msg) => void) | undefined;
  constructor(readonly worker: Worker) {
    const push = (m: Msg) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(m);
      } else this.queue.push(m);
    };
    worker.on("message", push);
    worker.on("error", (e) => push({ error: e.message }));
    worker.on("exit", (code) => push({ error: `tokenizer worker exited (code ${code})` }));
  }
  async next(): Promise<FlatTokenizedChunk> {
    const m = this.queue.shift() ?? (await new Promise<Msg>((r) => (this.waiting = r)));
    if (m.fatal) throw new Error(`tokenizer worker failed to start: ${m.fatal}`);
    if (m.error) throw new Error(m.error);
    if (!m.chunk) throw new Error("tokenizer worker ended early");
    this.worker.postMessage(1); // credit: one more block may be posted
    return m.chunk;
  }
}

/** `threads - 1` tokenizer workers; the caller tokenizes phase 0 itself. */
export class TokenizeWorkers {
  private readonly streams: WorkerStream[];
  /**
   * @param threads total threads incl. the caller's (≥ 2)
   * @param data everything but `select.stride/phase`, which are set per worker
   */
  constructor(
    readonly threads: number,
    data: Omit<TokenizeWorkerData, "select" | "window"> & { select: { start?: number; end?: number } },
  ) {
    this.streams = [];
    for (let j = 1; j < threads; j++) {
      const wd: TokenizeWorkerData = { ...data, select: { ...data.select, stride: threads, phase: j }, window: 4 };
      this.streams.push(new WorkerStream(startWorker(import.meta.url, "./worker", wd)));
    }
  }
  /** The next block of worker `phase` (1 .. threads-1), in order. @throws the worker's error. */
  next(phase: number): Promise<FlatTokenizedChunk> {
    return this.streams[phase - 1].next();
  }
  /** Stop every worker. */
  async close(): Promise<void> {
    await Promise.all(this.streams.map((s) => s.worker.terminate()));
  }
}
