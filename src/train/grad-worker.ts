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
 * Messages out: `{ ready: true }` once, then `{ id, loss, grads, terms? }` (grads flat, same order, in the
 * job's `gradBuf`; `terms`: each named loss term of the shard) or `{ id, error }`, and `{ weightsBack }` (the weights buffer, for reuse);
 * `{ fatal }` if it cannot start. Buffers are transferred both ways, never copied. The message types
 * live in `./grad-protocol.ts` (shared with `./parallel.ts`, so the two never import each other);
 * the replica is built by `src/model/factory.ts` from the config and spec (any objective's model).
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { GradWorkerData, GradWorkerMessage, GradWorkerReply } from "./grad-protocol.js";

export type { GradWorkerData, GradWorkerMessage };

function reply(m: GradWorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(m, transfer);
}

async function serve(): Promise<void> {
  const d = workerData as GradWorkerData;
  const tf = await import("@tensorflow/tfjs-core");
  const { initBackend } = await import("../backend.js");
  const { buildModel } = await import("../model/factory.js");
  const { batchTensors, disposeBatch, tensorFromReusedBuffer } = await import("./grad-protocol.js");
  await initBackend(d.backend);
  const model = buildModel(d.config, d.spec, { seed: 0 });
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
      reply({ weightsBack: m.flat }, [m.flat.buffer as ArrayBuffer]);
      return;
    }
    const { id, shard } = m;
    try {
      const t = batchTensors(shard.batch);
      let r: import("../model/bert.js").LossAndGrads;
      try {
        r = model.lossAndGrads(t, shard.batch, { training: shard.training, dropoutSeed: shard.dropoutSeed });
      } finally {
        disposeBatch(t);
      }
      const { loss, grads, terms } = r;
      const flat = m.gradBuf.length === total ? m.gradBuf : new Float32Array(total);
      let off = 0;
      for (const [name, v] of vars) {
        const g = grads.get(name);
        if (g) flat.set(g.dataSync() as Float32Array, off);
        else flat.fill(0, off, off + v.size);
        off += v.size;
      }
      tf.dispose([...grads.values()]);
      reply({ id, loss, grads: flat, ...(terms ? { terms } : {}) }, [flat.buffer as ArrayBuffer]);
    } catch (e) {
      reply({ id, error: (e as Error).message });
    }
  });
  reply({ ready: true });
}

if (!isMainThread && parentPort && (workerData as GradWorkerData | undefined)?.names) {
  serve().catch((e) => reply({ fatal: (e as Error).message }));
}
