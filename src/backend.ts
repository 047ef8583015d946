/**
 * Picks the TensorFlow.js backend that runs cellfm's model code.
 *
 * Order for `auto`: `@tensorflow/tfjs-node-gpu` (CUDA, "tensorflow" backend) → `@tensorflow/tfjs-node`
 * (libtensorflow on CPU, also "tensorflow") → `@tensorflow/tfjs-backend-webgpu` (any GPU with a Vulkan
 * driver, see `./webgpu.ts`; only for callers whose tensor reads are all asynchronous, and never on a
 * software/fallback adapter) → `@tensorflow/tfjs-backend-wasm` (bundled, the default
 * on machines where the native packages cannot install; its matmuls run on the machine's BLAS where
 * `npm ci` built `native/cellfm_blas.c`, see `./blas.ts`) → `@tensorflow/tfjs-backend-cpu` (pure JS,
 * last resort, ~25–90× slower than wasm).
 *
 * The tfjs-node packages are *not* dependencies of cellfm (they download libtensorflow 2.9.1 at
 * install time, which fails on air-gapped machines; the GPU one needs CUDA 11.2 + cuDNN 8.1 and
 * JIT-compiles on GPUs newer than Ampere: README "Backends"); install them yourself:
 * `npm install @tensorflow/tfjs-node-gpu@4.22.0`. They are loaded with a dynamic import only when
 * present. The same model code runs on every backend.
 */
// tfjs-core is imported inside the functions, not at the top: the CLI imports BACKEND_CHOICES from here
// for every command's flags, and loading TensorFlow.js costs ~0.2 s of start-up (`cellfm --help`).

/** Backend names accepted by `--backend`. */
export type BackendChoice = "auto" | "tensorflow" | "webgpu" | "wasm" | "cpu";

export const BACKEND_CHOICES: readonly BackendChoice[] = ["auto", "tensorflow", "webgpu", "wasm", "cpu"];

/** What {@link initBackend} selected. */
export interface BackendInfo {
  /** tfjs backend name as reported by `tf.getBackend()`: "tensorflow", "webgpu", "wasm" or "cpu". */
  name: string;
  /** npm package that provides it, e.g. "@tensorflow/tfjs-node-gpu". */
  package: string;
  /**
   * What runs the matmuls: on wasm the native BLAS (`src/blas.ts`, e.g. "OpenBLAS 0.3.21 …, 1 thread")
   * or "wasm (XNNPACK)" with the reason the native kernels are off; otherwise the backend's own.
   */
  kernels: string;
  /** webgpu only: the adapter, e.g. "nvidia hopper (NVIDIA: 550.54.15)". */
  adapter?: string;
}

let current: BackendInfo | undefined;

async function tryImport(pkg: string): Promise<boolean> {
  try {
    await import(pkg);
    return true;
  } catch {
    return false;
  }
}

async function activate(name: string): Promise<boolean> {
  const tf = await import("@tensorflow/tfjs-core");
  try {
    const ok = await tf.setBackend(name);
    await tf.ready();
    return ok && tf.getBackend() === name;
  } catch {
    return false;
  }
}

/**
 * Initialise a TensorFlow.js backend once per process (later calls with the same choice return the
 * cached result).
 *
 * @param choice `auto` (default) or a specific backend.
 * @param opts.webgpu the caller reads tensors only asynchronously (`await t.data()`), as WebGPU in
 *   Node requires (train, embed): `auto` may then take a GPU adapter and `webgpu` is accepted.
 * @returns the backend that is now active.
 * @throws Error when a specific backend was asked for and cannot be loaded (message says how to install it).
 */
export async function initBackend(choice: BackendChoice = "auto", opts: { webgpu?: boolean } = {}): Promise<BackendInfo> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new Error(`--backend must be one of ${BACKEND_CHOICES.join(", ")}; got "${choice}"`);
  }
  if (choice === "webgpu" && !opts.webgpu) {
    throw new Error("--backend webgpu runs `cellfm train` and `cellfm embed`; this command reads tensors synchronously, use wasm or auto");
  }
  if (current && (choice === "auto" || current.name === choice)) return current;

  if (choice === "auto" || choice === "tensorflow") {
    for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
      if ((await tryImport(pkg)) && (await activate("tensorflow"))) {
        return (current = { name: "tensorflow", package: pkg, kernels: `libtensorflow (${pkg})` });
      }
    }
    if (choice === "tensorflow") {
      throw new Error(
        "backend 'tensorflow' needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node " +
          "(npm install @tensorflow/tfjs-node-gpu@4.22.0 on a GPU server); neither could be loaded",
      );
    }
  }
  if (choice === "webgpu" || (choice === "auto" && opts.webgpu)) {
    const info = await initWebGPU(choice === "webgpu");
    if (info) return (current = info);
  }
  if (choice === "auto" || choice === "wasm") {
    if ((await tryImport("@tensorflow/tfjs-backend-wasm")) && (await activate("wasm"))) {
      const { installBlasKernels } = await import("./blas.js");
      const blas = installBlasKernels(await import("@tensorflow/tfjs-core"));
      const kernels = blas.active ? blas.provider : `${blas.provider}; no native BLAS: ${blas.reason}`;
      return (current = { name: "wasm", package: "@tensorflow/tfjs-backend-wasm", kernels });
    }
    if (choice === "wasm") throw new Error("backend 'wasm' could not be initialised (@tensorflow/tfjs-backend-wasm)");
  }
  await import("@tensorflow/tfjs-backend-cpu");
  if (!(await activate("cpu"))) throw new Error("backend 'cpu' could not be initialised");
  return (current = { name: "cpu", package: "@tensorflow/tfjs-backend-cpu", kernels: "JavaScript (tfjs-backend-cpu)" });
}

/**
 * Activate tfjs-backend-webgpu. `explicit` (`--backend webgpu`): any adapter, a software one
 * included, and failures throw. Otherwise (`auto`): only when a probe finds a hardware adapter.
 */
async function initWebGPU(explicit: boolean): Promise<BackendInfo | undefined> {
  const { installWebGPU, probeWebGPU, describeAdapter, watchWebGPUDevice } = await import("./webgpu.js");
  if (!explicit) {
    const probed = probeWebGPU();
    if (!probed || probed.fallback) return undefined;
  }
  const adapter = await installWebGPU();
  await import("@tensorflow/tfjs-backend-webgpu");
  const tf = await import("@tensorflow/tfjs-core");
  try {
    if (!(await tf.setBackend("webgpu"))) throw new Error("setBackend returned false");
    await tf.ready();
  } catch (e) {
    if (!explicit) return undefined;
    throw new Error(`backend 'webgpu' could not be initialised on ${describeAdapter(adapter)}: ${(e as Error).message}`);
  }
  watchWebGPUDevice(tf.backend());
  const described = describeAdapter(adapter);
  return { name: "webgpu", package: "@tensorflow/tfjs-backend-webgpu", adapter: described, kernels: `WebGPU (${described})` };
}

/** The backend chosen by {@link initBackend}, or undefined before it ran. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}
