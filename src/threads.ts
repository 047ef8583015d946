/**
 * Starting a `worker_threads` worker on one of our modules, shared by the stages that use several
 * cores (embed, train, assess): tfjs-wasm runs one thread per backend in Node, so each worker is a
 * thread with its own backend instance.
 *
 * The worker's entry module is resolved next to the caller: `./name.ts` when the caller runs from
 * sources (tsx, vitest), `./name.js` from the compiled `dist/`. Under tsx the worker registers tsx
 * first, since a worker does not inherit the parent's loader.
 */
import * as os from "node:os";
import { Worker } from "node:worker_threads";

// Eval'd bootstrap: under tsx/vitest (sources are .ts) register tsx in the worker first. Written to
// run whether the eval'd code is CommonJS or an ES module (a parent started with
// `--input-type=module` passes that to its workers), so no `require`.
const BOOT = `
(async () => {
  const { parentPort, workerData } = await import("node:worker_threads");
  try {
    if (workerData.__module.endsWith(".ts")) { const api = await import("tsx/esm/api"); api.register(); }
    await import(workerData.__module);
  } catch (e) {
    parentPort.postMessage({ fatal: String((e && e.message) || e) });
  }
})();
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

/**
 * CPU cores this process may use: `os.availableParallelism()` (on Linux the CPU affinity mask, so a
 * Slurm/cgroup cpuset is respected), or the environment variable `CELLFM_MAX_THREADS` when set (for
 * a CPU quota that the affinity mask does not show, e.g. a Kubernetes CPU limit).
 * @throws Error when `CELLFM_MAX_THREADS` is set but not a positive integer.
 */
export function availableCores(): number {
  const env = process.env.CELLFM_MAX_THREADS;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`CELLFM_MAX_THREADS must be a positive integer, got "${env}"`);
    return n;
  }
  return os.availableParallelism();
}

/**
 * The one check of a thread/worker count asked for by the user (`train --workers` /
 * `training.workers`, `embed --workers`, `assess --threads`): an integer from `min` to the cores
 * this process may use ({@link availableCores}). More threads than cores is an error, not capped:
 * each thread is a whole backend (and for train/embed a whole model copy), so extra threads only
 * cost memory and time, and for `train` the count is part of the run's exact reproducibility.
 * @param n the requested count
 * @param flag how the user wrote it, for the message (e.g. `"--threads"`)
 * @param min smallest allowed value (1; embed's `--workers` also takes 0 = auto)
 * @returns `n`
 * @throws Error naming the flag, the value and the available cores
 */
export function checkThreadCount(n: number, flag: string, min = 1): number {
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} must be an integer >= ${min}, got ${n}`);
  const cores = availableCores();
  if (n > cores) {
    throw new Error(
      `${flag} ${n} is more than the ${cores} CPU core${cores === 1 ? "" : "s"} available to this process; use at most ${cores} ` +
        `(each thread is a whole backend; set CELLFM_MAX_THREADS to override the detected count)`,
    );
  }
  return n;
}
