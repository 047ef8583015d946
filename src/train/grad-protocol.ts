/**
 * The messages between the training loop's main thread (`./parallel.ts`) and its gradient workers
 * (`./grad-worker.ts`), and the small helpers both sides use. Both import this module and never
 * each other (as `src/assess/worker.ts` does for assessment).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BackendChoice } from "../backend.js";
import type { ModelBatch, ModelSpec } from "../model/bert.js";
import type { BertConfig } from "../model/config.js";
import type { CollatedBatch } from "./objectives/types.js";
import { toModelBatch } from "../model/batch.js";

/** One shard of a micro-batch: whole cells with their loss targets, and its dropout seed. */
export interface GradShard {
  /** The shard's cells (padded to the shard's own longest cell) and targets. */
  batch: CollatedBatch;
  /** Base seed of the shard's dropout masks (see `shardDropoutSeed` in `./parallel.ts`). */
  dropoutSeed: number;
  /** Training mode (dropout on). */
  training: boolean;
}

/** Data given to each gradient worker. */
export interface GradWorkerData {
  /** Architecture of the replica (weights come later with a `weights` message). */
  config: BertConfig;
  /** Which model to build (encoding, objective, head options; `src/model/factory.ts`). */
  spec: ModelSpec;
  /** Backend to initialise in the worker (the main thread's). */
  backend: BackendChoice;
  /** Weight names in the main model's order (checked against the replica's). */
  names: string[];
}

/** Messages the main thread sends to a gradient worker. */
export type GradWorkerMessage =
  | { type: "weights"; flat: Float32Array }
  | { type: "job"; id: number; shard: GradShard; gradBuf: Float32Array };

/** Messages a gradient worker sends back. */
export type GradWorkerReply =
  | { ready: true }
  | { fatal: string }
  | { weightsBack: Float32Array }
  | { id: number; loss: number; grads: Float32Array; terms?: Record<string, number> }
  | { id: number; error: string };

/**
 * A float32 tensor from a view of a buffer that is handed between threads and reused: the wasm
 * backend copies the values into its heap, but cpu and tfjs-node keep the array they are given, so
 * those get their own copy.
 */
export function tensorFromReusedBuffer(view: Float32Array, shape: number[]): tf.Tensor {
  return tf.tensor(tf.getBackend() === "wasm" ? view : view.slice(), shape, "float32");
}

/** The model inputs of a collated batch as tensors (caller disposes them: {@link disposeBatch}). */
export function batchTensors(b: CollatedBatch): ModelBatch {
  return toModelBatch(b);
}

/** Dispose the tensors of {@link batchTensors}. */
export function disposeBatch(t: ModelBatch): void {
  tf.dispose([t.inputIds, t.attentionMask, ...(t.values ? [t.values] : [])]);
}

/** The array buffers of a collated batch (to transfer, not copy, to a worker). */
export function batchBuffers(b: CollatedBatch): ArrayBuffer[] {
  const arrays = [b.inputIds, b.attentionMask, b.values, b.positions, b.labels, b.targets, b.cellScalars, b.cellCounts, b.cellLibrary, b.cellBatch, b.mvcPositions, b.mvcGenes, b.mvcTargets, b.cellGroups];
  return arrays.filter((a): a is NonNullable<typeof a> => a !== undefined).map((a) => a.buffer as ArrayBuffer);
}
