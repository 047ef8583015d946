/**
 * Worker-thread side of {@link DataParallel} (`./parallel.ts`): one replica of the model on its own
 * TensorFlow.js backend (wasm threads do not start in Node, so a second core needs a second
 * thread). It receives the main thread's weights after every optimizer step and computes the loss
 * and gradients of the batch shards it is sent. It never updates weights itself.
 *
 * Messages in (in order, on one port, so a job always sees the weights sent before it):
 * - `{ type: "weights", flat }`: every weight, concatenated in `model.weights` order (internal layout)
 * - `{ type: "job", id, shard, gradBuf }`: loss and gradients of one {@link GradShard}, written
 *   into `gradBuf` (a buffer the main thread hands back each step)
 * Messages out: `{ ready: true }` once, then `{ id, loss, grads }` (grads flat, same order, in the
 * job's `gradBuf`) or `{ id, error }`, and `{ weightsBack }` (the weights buffer, for reuse);
 * `{ fatal }` if it cannot start. Buffers are transferred both ways, never copied.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { BackendChoice } from "../backend.js";
import type { BertConfig } from "../model/config.js";
import type { GradShard } from "./parallel.js";

/** Data given to each gradient worker. */
export interface GradWorkerData {
  /** Architecture of the replica (weights come later with a `weights` message). */
  config: BertConfig;
  /** Backend to initialise in the worker (the main thread's). */
  backend: BackendChoice;
  /** Weight names in the main model's order (checked against the replica's). */
  names: string[];
}

/** Messages the main thread sends to a gradient worker. */
export type GradWorkerMessage =
  | { type: "weights"; flat: Float32Array }
  | { type: "job"; id: number; shard: GradShard; gradBuf: Float32Array };

async function serve(): Promise<void> {
  const d = workerData as GradWorkerData;
  const tf = await import("@tensorflow/tfjs-core");
  const { initBackend } = await import("../backend.js");
  const { BertForMaskedLM } = await import("../model/bert.js");
  const { tensorFromReusedBuffer } = await import("./parallel.js");
  await initBackend(d.backend);
  const model = new BertForMaskedLM(d.config, { seed: 0 });
  const vars = [...model.weights.entries()];
  const names = vars.map(([n]) => n);
  if (names.join("\n") !== d.names.join("\n")) throw new Error("the replica's weights differ from the main model's");
  const total = vars.reduce((s, [, v]) => s + v.size, 0);

  parentPort!.on("message", (m: GradWorkerMessage) => {
    if (m.type === "weights") {
      let off = 0;
      for (const [, v] of vars) {
        // (m.flat goes back to the main thread below)
        tf.tidy(() => v.assign(tensorFromReusedBuffer(m.flat.subarray(off, off + v.size), v.shape)));
        off += v.size;
      }
      // hand the buffer back for the next sync (a fresh 40 MB buffer costs more than the copy)
      parentPort!.postMessage({ weightsBack: m.flat }, [m.flat.buffer as ArrayBuffer]);
      return;
    }
    const { id, shard } = m;
    try {
      const b = shard.batch;
      const inputIds = tf.tensor2d(b.inputIds, [b.batch, b.seqLen], "int32");
      const attentionMask = tf.tensor2d(b.attentionMask, [b.batch, b.seqLen], "float32");
      const { loss, grads } = model.lossAndGrads(
        { inputIds, attentionMask },
        { positions: b.positions, labels: b.labels },
        { training: shard.training, dropoutSeed: shard.dropoutSeed },
      );
      tf.dispose([inputIds, attentionMask]);
      const flat = m.gradBuf.length === total ? m.gradBuf : new Float32Array(total);
      let off = 0;
      for (const [name, v] of vars) {
        const g = grads.get(name);
        if (g) flat.set(g.dataSync() as Float32Array, off);
        else flat.fill(0, off, off + v.size);
        off += v.size;
      }
      tf.dispose([...grads.values()]);
      parentPort!.postMessage({ id, loss, grads: flat }, [flat.buffer as ArrayBuffer]);
    } catch (e) {
      parentPort!.postMessage({ id, error: (e as Error).message });
    }
  });
  parentPort!.postMessage({ ready: true });
}

if (!isMainThread && parentPort && (workerData as GradWorkerData | undefined)?.names) {
  serve().catch((e) => parentPort!.postMessage({ fatal: (e as Error).message }));
}
