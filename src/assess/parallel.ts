/**
 * The assessment on several cores: a small pool of `worker_threads` (worker.ts) that runs the exact
 * kNN graphs, the UMAP layouts and the row types of the all-pairs scan. Each job is computed by the same code as on the
 * main thread from the same inputs and seed, so results do not depend on the number of threads:
 * a kNN graph is exact; a UMAP layout depends only on its graph and seed; a pair-scan median only on its type-pair block;
 * histogram counts are integer sums, exact in any order.
 */
import * as os from "node:os";
import type { Worker } from "node:worker_threads";
import { availableCores, startWorker } from "../threads.js";
import type { BackendChoice } from "../backend.js";
import { exactKnn, type KnnGraph } from "./knn.js";
import { assembleScan, batchCodes, measureFromSpec, scanPairs, type JointHistogram, type MeasureSpec, type PairSummary, type RowTypeResult, type ScanCounts, type ScanOptions, type TypeBlock } from "./pairs.js";
import { umapFromKnn, type UmapOptions } from "./umap.js";
import type { AssessJob } from "./worker.js";

/**
 * Default worker count: the machine's cores, bounded so that the workers' memory stays within a
 * quarter of the machine's (each pair-scan worker holds its own copy of the measures' data in its
 * wasm heap, ~0.5 GB at 44,500 cells): at most one worker per 2 GiB of RAM.
 */
export function defaultThreads(): number {
  return Math.max(1, Math.min(availableCores(), Math.floor(os.totalmem() / 2 ** 31)));
}

/** Copy a Float32Array into shared memory (so workers read it without a per-worker copy in JS). */
export function toShared(x: Float32Array): Float32Array {
  const s = new Float32Array(new SharedArrayBuffer(x.byteLength));
  s.set(x);
  return s;
}

/**
 * Where the assessment's heavy jobs run: {@link AssessPool} (worker threads) or {@link InlineRunner}
 * (the main thread). Both give identical results.
 */
export interface AssessRunner {
  /** Threads the jobs run on (the main thread counts as 1). */
  readonly size: number;
  /** {@link exactKnn} of X `[n, d]` with k neighbours. */
  knn(x: Float32Array, n: number, d: number, k: number): Promise<KnnGraph>;
  /** {@link umapFromKnn}. */
  umap(knn: KnnGraph, opts: Omit<UmapOptions, "onEpoch">): Promise<Float32Array>;
  /** {@link scanPairs} over the measures built from `specs`. */
  scanPairs(
    blocks: readonly TypeBlock[],
    specs: readonly MeasureSpec[],
    joints: readonly [string, string][],
    opts?: ScanOptions,
  ): Promise<{ summaries: PairSummary[]; joints: JointHistogram[] }>;
  close(): Promise<void>;
}

/** Runs the jobs on the calling thread (threads = 1), each as soon as it is called. */
export class InlineRunner implements AssessRunner {
  readonly size = 1;
  async knn(x: Float32Array, n: number, d: number, k: number): Promise<KnnGraph> {
    return exactKnn(x, n, d, { k });
  }
  async umap(knn: KnnGraph, opts: Omit<UmapOptions, "onEpoch">): Promise<Float32Array> {
    return umapFromKnn(knn, opts);
  }
  async scanPairs(
    blocks: readonly TypeBlock[],
    specs: readonly MeasureSpec[],
    joints: readonly [string, string][],
    opts: ScanOptions = {},
  ): Promise<{ summaries: PairSummary[]; joints: JointHistogram[] }> {
    const measures = specs.map(measureFromSpec);
    try {
      return scanPairs(blocks, measures, joints, opts);
    } finally {
      measures.forEach((m) => m.dispose?.());
    }
  }
  async close(): Promise<void> {}
}

/** A job without its id (distributes over the union). */
type JobBody = AssessJob extends infer J ? (J extends unknown ? Omit<J, "id"> : never) : never;

type Reply = { id: number; error?: string; part?: { k: number; indices: Int32Array; distances: Float32Array }; coords?: Float32Array; row?: RowTypeResult; counts?: ScanCounts };

/**
 * A pool of assessment workers. Start with {@link AssessPool.start}, always {@link AssessPool.close}.
 */
export class AssessPool implements AssessRunner {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly idle: Worker[] = [];
  private readonly waiting: ((w: Worker) => void)[] = [];

  private constructor(private readonly workers: Worker[]) {}

  /**
   * Start `threads` workers, each with the TensorFlow.js backend `backend`.
   * @throws Error when a worker fails to start (the others are stopped).
   */
  static async start(threads: number, backend: BackendChoice): Promise<AssessPool> {
    const workers: Worker[] = [];
    const pool = new AssessPool(workers);
    try {
      await Promise.all(
        Array.from({ length: threads }, () => {
          const w = startWorker(import.meta.url, "./worker", { backend });
          workers.push(w);
          return new Promise<void>((resolve, reject) => {
            w.on("error", (e) => {
              reject(e);
              for (const p of pool.pending.values()) p.reject(e);
            });
            w.on("message", (m: Reply & { ready?: boolean; fatal?: string }) => {
              if (m.fatal) return reject(new Error(`assessment worker failed to start: ${m.fatal}`));
              if (m.ready) {
                pool.idle.push(w);
                return resolve();
              }
              const p = pool.pending.get(m.id);
              pool.pending.delete(m.id);
              if (m.error) p?.reject(new Error(`assessment worker: ${m.error}`));
              else p?.resolve(m);
            });
          });
        }),
      );
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  private call(w: Worker, job: JobBody): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ ...job, id });
    });
  }

  private acquire(): Promise<Worker> {
    const w = this.idle.pop();
    return w ? Promise.resolve(w) : new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(w: Worker): void {
    const next = this.waiting.shift();
    if (next) next(w);
    else this.idle.push(w);
  }

  /**
   * {@link exactKnn} of X `[n, d]`, its rows split in one part per worker (each part on the next free
   * worker; X is shared, not copied); equal to the single-thread graph.
   */
  async knn(x: Float32Array, n: number, d: number, k: number): Promise<KnnGraph> {
    const xs = x.buffer instanceof SharedArrayBuffer ? x : toShared(x);
    const parts = Math.max(1, Math.min(this.workers.length, Math.floor(n / 1000)));
    const bounds = Array.from({ length: parts + 1 }, (_, p) => Math.round((p * n) / parts));
    const got = await Promise.all(
      bounds.slice(0, -1).map(async (r0, p) => {
        const w = await this.acquire();
        try {
          return (await this.call(w, { type: "knn", x: xs, n, d, k, r0, r1: bounds[p + 1] })).part!;
        } finally {
          this.release(w);
        }
      }),
    );
    const kk = got[0].k;
    const indices = new Int32Array(n * kk);
    const distances = new Float32Array(n * kk);
    got.forEach((g, p) => {
      indices.set(g.indices, bounds[p] * kk);
      distances.set(g.distances, bounds[p] * kk);
    });
    return { n, k: kk, indices, distances };
  }

  /** {@link umapFromKnn} on the next free worker. */
  async umap(knn: KnnGraph, opts: Omit<UmapOptions, "onEpoch">): Promise<Float32Array> {
    const w = await this.acquire();
    try {
      return (await this.call(w, { type: "umap", knn, opts })).coords!;
    } finally {
      this.release(w);
    }
  }

  /**
   * {@link scanPairs} with row types handed out to all workers (largest first); same result as on one
   * thread. Waits until every worker is free.
   */
  async scanPairs(
    blocks: readonly TypeBlock[],
    specs: readonly MeasureSpec[],
    joints: readonly [string, string][],
    opts: ScanOptions = {},
  ): Promise<{ summaries: PairSummary[]; joints: JointHistogram[] }> {
    const shared = specs.map((s) => ({ ...s, x: s.x.buffer instanceof SharedArrayBuffer ? s.x : toShared(s.x) }));
    const codes = opts.batches ? batchCodes(opts.batches) : undefined;
    const total = (blocks.length * (blocks.length + 1)) / 2;
    const rows: RowTypeResult[] = [];
    const counts: ScanCounts[] = [];
    let next = 0;
    let done = 0;
    const ws = await Promise.all(this.workers.map(() => this.acquire()));
    try {
      await Promise.all(
        ws.map(async (w) => {
          await this.call(w, { type: "pairs-setup", blocks: [...blocks], specs: shared, joints: [...joints], bins1d: opts.bins1d, bins2d: opts.bins2d, batchCodes: codes });
          while (next < blocks.length) {
            const bi = next++;
            rows.push((await this.call(w, { type: "pairs-row", bi })).row!);
            done += blocks.length - bi;
            opts.onBlock?.(done, total);
          }
          counts.push((await this.call(w, { type: "pairs-finish" })).counts!);
        }),
      );
    } finally {
      ws.forEach((w) => this.release(w));
    }
    // measure metadata (id, label, histogram range) as the workers computed it
    const meta = specs.map((s) => {
      const m = measureFromSpec(s); // cheap: no tensor is made before the first block
      m.dispose?.();
      return { id: m.id, label: m.label, max: m.max };
    });
    return assembleScan(blocks, meta, joints, rows, counts, { ...opts, batches: Boolean(opts.batches) });
  }

  /** Stop all workers. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
