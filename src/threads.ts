/**
 * Starting a `worker_threads` worker on one of our modules, shared by the stages that use several
 * cores (embed, train, assess): tfjs-wasm runs one thread per backend in Node, so each worker is a
 * thread with its own backend instance.
 *
 * The worker's entry module is resolved next to the caller: `./name.ts` when the caller runs from
 * sources (tsx, vitest), `./name.js` from the compiled `dist/`. Under tsx the worker registers tsx
 * first, since a worker does not inherit the parent's loader.
 */
import { Worker } from "node:worker_threads";

// Eval'd bootstrap: under tsx/vitest (sources are .ts) register tsx in the worker first.
const BOOT = `
const { parentPort, workerData } = require("node:worker_threads");
(async () => {
  if (workerData.__module.endsWith(".ts")) { const api = await import("tsx/esm/api"); api.register(); }
  await import(workerData.__module);
})().catch((e) => parentPort.postMessage({ fatal: String(e && e.message || e) }));
`;

/**
 * Start a worker running module `name` (without extension, relative to `callerUrl`).
 * A failure to load the module is posted to the parent as `{ fatal: message }`.
 * @param callerUrl the caller's `import.meta.url`
 * @param name e.g. `"./worker"`
 * @param data the worker's `workerData` (structured-cloned); `__module` is added
 */
export function startWorker(callerUrl: string, name: string, data: object): Worker {
  const self = new URL(callerUrl);
  const module = new URL(`${name}${self.pathname.endsWith(".ts") ? ".ts" : ".js"}`, self).href;
  return new Worker(BOOT, { eval: true, workerData: { ...data, __module: module } });
}
