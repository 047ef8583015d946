/**
 * Native CPU kernels: `BatchMatMul` (what `tf.matMul` runs) and `_FusedMatMul` (`tf.fused.matMul`)
 * of `@tensorflow/tfjs-backend-wasm` re-registered to call the machine's BLAS `sgemm` (OpenBLAS on
 * Linux, Accelerate on macOS) through cellfm's one native piece, `native/cellfm_blas.c` (built by
 * `npm ci` where a BLAS exists, see `scripts/build-native.mjs`). The BLAS reads and writes the wasm
 * heap directly (the backend's `WebAssembly.Memory` buffer at each tensor's `memoryOffset`): no
 * tensor is copied. Everything else, and any matmul case listed below, stays on the wasm kernels.
 *
 * Why: one tfjs-wasm thread multiplies the model's shapes at 25–28 GFLOP/s, OpenBLAS at 75–100 on
 * the same core, and matmuls are ~80 % of a training step (issue 18).
 *
 * Semantics follow the wasm kernels of tfjs-backend-wasm 4.22 (`src/kernels/BatchMatMul.ts`,
 * `src/kernels/_FusedMatMul.ts`, `src/cc/batch_mat_mul_impl.cc`): out = act(op(a) · op(b) + bias)
 * with op = transpose when `transposeA`/`transposeB`, batch dimensions broadcast, a rank-1 bias
 * added per output column (or one value for all), and relu (max(x, 0)) / relu6 clamps. Delegated to
 * the original wasm kernel: non-float32 inputs, batch shapes that broadcast other than "equal or
 * one of them 1", prelu/elu/leakyrelu/sigmoid activations and non-rank-1 bias (the wasm kernel's
 * own behaviour, errors included, is kept there).
 *
 * Off switch: `CELLFM_BLAS=off` (then, and where the native piece is missing, matmuls run on plain
 * wasm as before and {@link blasStatus} says why). Threads: `CELLFM_BLAS_THREADS` (default
 * {@link DEFAULT_BLAS_THREADS}), else `OPENBLAS_NUM_THREADS`.
 */
import { createRequire } from "node:module";
import type * as tfc from "@tensorflow/tfjs-core";

/** BLAS threads when neither `CELLFM_BLAS_THREADS` nor `OPENBLAS_NUM_THREADS` is set. */
export const DEFAULT_BLAS_THREADS = 1;

/** The compiled native module (`native/cellfm_blas.c`). */
interface NativeBlas {
  sgemm(
    buf: ArrayBuffer, transA: boolean, transB: boolean, m: number, n: number, k: number, batch: number,
    aOff: number, aStride: number, bOff: number, bStride: number, cOff: number, cStride: number,
    biasOff: number, biasLen: number, act: number,
  ): void;
  threads(n: number): number;
  config: string;
}

/** Which kernels run the matmuls, for logs, run.json, eval.json and `cellfm --version`. */
export interface BlasStatus {
  /** true when the native sgemm kernels are registered for the wasm backend. */
  active: boolean;
  /** e.g. "OpenBLAS 0.3.21 NO_AFFINITY Haswell MAX_THREADS=64 (core Haswell), 1 thread" or "wasm (XNNPACK)". */
  provider: string;
  /** Why the native kernels are not active (absent when they are). */
  reason?: string;
}

const NATIVE_PATH = "../native/build/Release/cellfm_blas.node";
let native: NativeBlas | null | undefined;
let loadError = "";
let status: BlasStatus | undefined;

function disabledByEnv(): boolean {
  return ["0", "off", "false", "no"].includes(String(process.env.CELLFM_BLAS ?? "").trim().toLowerCase());
}

/** BLAS thread count asked for by the environment, or the default. */
export function blasThreadsWanted(): number {
  for (const name of ["CELLFM_BLAS_THREADS", "OPENBLAS_NUM_THREADS"]) {
    const v = process.env[name];
    if (v === undefined || v === "") continue;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${v}"`);
    return n;
  }
  return DEFAULT_BLAS_THREADS;
}

/** Load the native module once (null when absent or switched off; {@link loadError} says why). */
function loadNative(): NativeBlas | null {
  if (native !== undefined) return native;
  if (disabledByEnv()) {
    loadError = "CELLFM_BLAS=off";
    return (native = null);
  }
  const threads = blasThreadsWanted();
  // OpenBLAS sizes its thread pool from this when the library loads.
  if (!process.env.OPENBLAS_NUM_THREADS) process.env.OPENBLAS_NUM_THREADS = String(threads);
  try {
    const m = createRequire(import.meta.url)(NATIVE_PATH) as NativeBlas;
    m.threads(threads);
    native = m;
  } catch (e) {
    const msg = String((e as Error)?.message ?? e).split("\n")[0];
    loadError = /Cannot find module/.test(msg)
      ? "native/build/Release/cellfm_blas.node not built (no BLAS at install: apt-get install libopenblas-dev, then npm run build:native)"
      : `native/build/Release/cellfm_blas.node did not load: ${msg}`;
    native = null;
  }
  return native;
}

/** Why the native module is not loaded ("" when it is). */
export function nativeBlasProblem(): string {
  return loadError;
}

/** Provider string of the loaded native module: library, build, core and threads. */
export function nativeBlasProvider(m: NativeBlas): string {
  const n = m.threads(0);
  const lib = m.config.startsWith("OpenBLAS") || m.config === "Accelerate" ? m.config : `BLAS ${m.config}`;
  return n > 0 ? `${lib}, ${n} thread${n === 1 ? "" : "s"}` : lib;
}

/** What runs the matmuls now: the status of the last {@link installBlasKernels}, else plain wasm. */
export function blasStatus(): BlasStatus {
  return status ?? { active: false, provider: "wasm (XNNPACK)", reason: "native kernels not installed" };
}

/** The native module's sgemm when it loads (for benchmarks and tests), else null. */
export function nativeBlas(): NativeBlas | null {
  return loadNative();
}

type Backend = {
  wasm: { HEAPF32: Float32Array };
  dataIdMap: { get(id: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: string): tfc.TensorInfo;
};

/** Float index of a tensor in the wasm heap. */
function offsetOf(be: Backend, t: tfc.TensorInfo): number {
  const off = be.dataIdMap.get(t.dataId).memoryOffset;
  if (off % 4 !== 0) throw new Error(`cellfm blas: tensor at byte ${off} of the wasm heap is not float-aligned`);
  return off / 4;
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Batch geometry of a matmul, or null when its batch shapes need a broadcast we do not do here. */
function geometry(tf: typeof tfc, a: tfc.TensorInfo, b: tfc.TensorInfo, transposeA: boolean, transposeB: boolean) {
  const ra = a.shape.length, rb = b.shape.length;
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and ` +
        `transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const ba = size(a.shape.slice(0, -2)), bb = size(b.shape.slice(0, -2)), batch = size(outer);
  if (!((ba === batch || ba === 1) && (bb === batch || bb === 1))) return null;
  return { m, n, k, batch, ba, bb, outShape: [...outer, m, n] };
}

type KernelArgs = { inputs: Record<string, tfc.TensorInfo | undefined>; backend: unknown; attrs?: Record<string, unknown> };
const ACT: Record<string, number> = { linear: 0, relu: 1, relu6: 2 };

/**
 * Register the native `BatchMatMul` and `_FusedMatMul` kernels for the wasm backend (call once the
 * wasm backend is active; repeated calls are no-ops).
 * @returns what runs the matmuls now (`active` false, with the reason, when the native piece is
 *   missing or switched off; the wasm kernels are then left as they are).
 */
export function installBlasKernels(tf: typeof tfc): BlasStatus {
  if (status) return status;
  const m = loadNative();
  if (!m) return (status = { active: false, provider: "wasm (XNNPACK)", reason: loadError });
  // Self-test on a 2 × 2 product before trusting the library with the model.
  const buf = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]);
  m.sgemm(buf.buffer, false, false, 2, 2, 2, 1, 0, 0, 4, 0, 8, 0, 0, 0, 0);
  if (buf.subarray(8).join() !== "19,22,43,50") {
    return (status = { active: false, provider: "wasm (XNNPACK)", reason: `${m.config}: sgemm self-test failed` });
  }

  const original = (name: string) => {
    const k = tf.getKernel(name, "wasm");
    if (!k) throw new Error(`cellfm blas: the wasm backend has no ${name} kernel to replace`);
    return k;
  };
  const origBmm = original(tf.BatchMatMul), origFused = original(tf._FusedMatMul);

  const run = (args: KernelArgs, fused: boolean): tfc.TensorInfo | null => {
    const be = args.backend as Backend;
    const { a, b } = args.inputs as { a: tfc.TensorInfo; b: tfc.TensorInfo };
    const attrs = args.attrs ?? {};
    const transposeA = Boolean(attrs.transposeA), transposeB = Boolean(attrs.transposeB);
    if (a.dtype !== "float32" || b.dtype !== "float32") return null;
    const bias = fused ? args.inputs.bias : undefined;
    const act = fused ? ACT[String(attrs.activation ?? "linear")] : 0;
    if (act === undefined || (fused && args.inputs.preluActivationWeights)) return null;
    if (bias && (bias.shape.length !== 1 || bias.dtype !== "float32")) return null;
    const g = geometry(tf, a, b, transposeA, transposeB);
    if (!g) return null;
    if (bias && bias.shape[0] !== g.n && bias.shape[0] !== 1) return null;
    const out = be.makeOutput(g.outShape, "float32");
    if (g.batch * g.m * g.n === 0) return out;
    // After makeOutput: an allocation may have grown (and replaced) the heap's buffer.
    m.sgemm(
      be.wasm.HEAPF32.buffer as ArrayBuffer, transposeA, transposeB, g.m, g.n, g.k, g.batch,
      offsetOf(be, a), g.ba === 1 ? 0 : g.m * g.k, offsetOf(be, b), g.bb === 1 ? 0 : g.k * g.n,
      offsetOf(be, out), g.m * g.n, bias ? offsetOf(be, bias) : 0, bias ? bias.shape[0] : 0, act,
    );
    return out;
  };

  tf.unregisterKernel(tf.BatchMatMul, "wasm");
  tf.registerKernel({
    kernelName: tf.BatchMatMul,
    backendName: "wasm",
    setupFunc: origBmm.setupFunc,
    kernelFunc: ((args: KernelArgs) => run(args, false) ?? origBmm.kernelFunc(args as never)) as tfc.KernelFunc,
  });
  tf.unregisterKernel(tf._FusedMatMul, "wasm");
  tf.registerKernel({
    kernelName: tf._FusedMatMul,
    backendName: "wasm",
    setupFunc: origFused.setupFunc,
    kernelFunc: ((args: KernelArgs) => run(args, true) ?? origFused.kernelFunc(args as never)) as tfc.KernelFunc,
  });
  return (status = { active: true, provider: nativeBlasProvider(m) });
}
