/**
 * Native CPU kernels: `BatchMatMul` (what `tf.matMul` runs) and `_FusedMatMul` (`tf.fused.matMul`)
 * of `@tensorflow/tfjs-backend-wasm` re-registered to call the machine's BLAS `sgemm` (OpenBLAS on
 * Linux, Accelerate on macOS) through cellfm's one native piece, `native/cellfm_blas.c` (built by
 * `npm ci` where a BLAS exists, see `scripts/build-native.mjs`). The BLAS reads and writes the wasm
 * heap directly (the backend's `WebAssembly.Memory` buffer at each tensor's `memoryOffset`): no
 * tensor is copied. Everything else, and any matmul case listed below, stays on the wasm kernels.
 *
 * Beside the matmuls, the same native piece runs (on the heap, no copies) the stock `Softmax` kernel
 * and two fused kernels of cellfm's own ({@link MASKED_SOFTMAX}, {@link LAYER_NORM}); `GatherV2` along
 * axis 0 is replaced by row copies on the heap (tfjs-wasm gathers element by element, ~13 ms per MB).
 * Each replacement equals the stock kernel within float rounding (test/model/blas.test.ts).
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

/**
 * BLAS threads when neither `CELLFM_BLAS_THREADS` nor `OPENBLAS_NUM_THREADS` is set: one, with
 * data-parallel workers (one per core) as the default, measured faster than one worker with a BLAS
 * thread per core (training 512 × 4 on 2 cores: faster in 5 of 7 alternating pairs, median 456
 * against 373 tok/s; docs/benchmarks.md, `npm run bench -- --compare --model-only` prints both).
 */
export const DEFAULT_BLAS_THREADS = 1;

/** The compiled native module (`native/cellfm_blas.c`). */
interface NativeBlas {
  sgemm(
    buf: ArrayBuffer, transA: boolean, transB: boolean, m: number, n: number, k: number, batch: number,
    aOff: number, aStride: number, bOff: number, bStride: number, cOff: number, cStride: number,
    biasOff: number, biasLen: number, act: number,
  ): void;
  softmax(buf: ArrayBuffer, xOff: number, outOff: number, rows: number, cols: number, biasOff: number, biasRows: number, rowsPerBias: number): void;
  layernorm(
    buf: ArrayBuffer, xOff: number, resOff: number, gOff: number, bOff: number, yOff: number, xhatOff: number, rstdOff: number,
    rows: number, cols: number, eps: number,
  ): void;
  attention(
    buf: ArrayBuffer, qkvOff: number, ld: number, biasOff: number, dropOff: number, pOff: number, ctxOff: number,
    batch: number, heads: number, L: number, D: number, scale: number,
  ): void;
  attention_backward(
    buf: ArrayBuffer, qkvOff: number, ld: number, pOff: number, dropOff: number, dctxOff: number, dqkvOff: number,
    batch: number, heads: number, L: number, D: number, scale: number,
  ): void;
  threads(n: number): number;
  config: string;
}

/**
 * Kernels registered for the wasm backend only where the native piece is active (no gradients: call
 * them inside a custom op; `src/model/ops.ts` falls back to tfjs ops elsewhere).
 * - `CellfmMaskedSoftmax`: inputs `x` `[..., cols]`, `bias` `[nb, ..., cols]` (size nb·cols, nb dividing
 *   the rows of x): softmax over the last axis of `x + bias`, bias row `floor(row / (rows / nb))`, e.g.
 *   scores `[batch, heads, L, L]` with the attention mask `[batch, 1, 1, L]`.
 * - `CellfmLayerNorm`: inputs `x` `[rows, cols]`, optional `residual` (same shape), `gamma`, `beta`
 *   `[cols]`; attr `eps`; outputs `y`, `xhat` `[rows, cols]` and `rstd` `[rows, 1]` of LayerNorm(x + residual).
 */
export const MASKED_SOFTMAX = "CellfmMaskedSoftmax";
/**
 * `CellfmAttention`: BERT self-attention after the projections, heads read in place. Inputs `qkv`
 * `[batch·L, 3·H]` (q | k | v, H = heads·D), `bias` `[batch, 1, 1, L]` additive mask, optional `drop`
 * `[batch·heads, L, L]` dropout multipliers; attrs `heads`, `scale`. Outputs `p` `[batch·heads, L, L]`
 * = softmax(scale·q_h k_hᵀ + bias) per (cell, head) and `ctx` `[batch·L, H]` = (p ∘ drop) v_h, heads
 * side by side (HF `BertSelfAttention`). `CellfmAttentionGrad`: inputs `qkv`, `p`, `dctx` `[batch·L, H]`,
 * optional `drop`; output `dqkv` `[batch·L, 3·H]`.
 */
export const ATTENTION = "CellfmAttention";
export const ATTENTION_GRAD = "CellfmAttentionGrad";
export const LAYER_NORM = "CellfmLayerNorm";

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
/** The functions this version of cellfm calls in the native module. */
const NATIVE_FUNCTIONS = ["sgemm", "softmax", "layernorm", "attention", "attention_backward", "threads"] as const;
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

/** The functions of {@link NATIVE_FUNCTIONS} a loaded native module lacks (a build of an older cellfm). */
export function missingNativeFunctions(m: object): string[] {
  return NATIVE_FUNCTIONS.filter((f) => typeof (m as Record<string, unknown>)[f] !== "function");
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
    // a module built by an older cellfm (e.g. after a `git pull` without `npm ci`) lacks newer kernels:
    // plain wasm, and one line saying how to rebuild, instead of a TypeError in the first step
    const missing = missingNativeFunctions(m);
    if (missing.length) {
      loadError = `native/build/Release/cellfm_blas.node is from an older cellfm (no ${missing.join(", ")}): rebuild with npm run build:native`;
      return (native = null);
    }
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
  // a stock wasm kernel replaced by a native one, which returns null/undefined for the cases it does not take
  const replace = (orig: tfc.KernelConfig, fn: (args: KernelArgs) => tfc.TensorInfo | null | undefined) => {
    tf.unregisterKernel(orig.kernelName, "wasm");
    tf.registerKernel({
      kernelName: orig.kernelName,
      backendName: "wasm",
      setupFunc: orig.setupFunc,
      kernelFunc: ((args: KernelArgs) => fn(args) ?? orig.kernelFunc(args as never)) as tfc.KernelFunc,
    });
  };

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

  const heapF32 = (be: Backend) => be.wasm.HEAPF32.buffer as ArrayBuffer;
  const origSoftmax = original(tf.Softmax), origGather = original(tf.GatherV2);
  const softmax = (args: KernelArgs): tfc.TensorInfo | null => {
    const be = args.backend as Backend;
    const x = args.inputs.logits!;
    const dim = Number(args.attrs?.dim ?? -1);
    if (x.dtype !== "float32" || x.shape.length === 0 || (dim !== -1 && dim !== x.shape.length - 1)) return null;
    const out = be.makeOutput(x.shape, "float32");
    const cols = x.shape[x.shape.length - 1];
    if (size(x.shape) > 0) m.softmax(heapF32(be), offsetOf(be, x), offsetOf(be, out), size(x.shape) / cols, cols, 0, 0, 1);
    return out;
  };
  const gather = (args: KernelArgs): tfc.TensorInfo | null => {
    const be = args.backend as Backend & { readSync(id: object): ArrayLike<number> };
    const { x, indices } = args.inputs as { x: tfc.TensorInfo; indices: tfc.TensorInfo };
    const axis = Number(args.attrs?.axis ?? 0), batchDims = Number(args.attrs?.batchDims ?? 0);
    if (x.dtype !== "float32" || indices.dtype !== "int32" || batchDims !== 0 || x.shape.length === 0) return null;
    if (axis !== 0 && axis !== -x.shape.length) return null;
    const rows = x.shape[0], slice = size(x.shape.slice(1));
    const idx = be.readSync(indices.dataId);
    for (let i = 0; i < idx.length; i++) {
      const j = idx[i];
      if (!(j >= 0 && j <= rows - 1)) throw new Error(`GatherV2: the index value ${j} is not in [0, ${rows - 1}]`);
    }
    const out = be.makeOutput([...indices.shape, ...x.shape.slice(1)], "float32");
    if (size(x.shape) === 0 || idx.length === 0) return out;
    const heap = be.wasm.HEAPF32, xo = offsetOf(be, x), oo = offsetOf(be, out);
    for (let i = 0; i < idx.length; i++) heap.copyWithin(oo + i * slice, xo + idx[i] * slice, xo + (idx[i] + 1) * slice);
    return out;
  };
  replace(origSoftmax, softmax);
  replace(origGather, gather);
  tf.registerKernel({
    kernelName: MASKED_SOFTMAX,
    backendName: "wasm",
    kernelFunc: ((args: KernelArgs) => {
      const be = args.backend as Backend;
      const { x, bias } = args.inputs as { x: tfc.TensorInfo; bias: tfc.TensorInfo };
      const cols = x.shape[x.shape.length - 1], rows = size(x.shape) / cols, nb = size(bias.shape) / cols;
      if (x.dtype !== "float32" || bias.dtype !== "float32" || bias.shape[bias.shape.length - 1] !== cols || !Number.isInteger(nb) || rows % nb !== 0) {
        throw new Error(`${MASKED_SOFTMAX}: bias [${bias.shape}] does not broadcast over the rows of x [${x.shape}]`);
      }
      const out = be.makeOutput(x.shape, "float32");
      if (rows > 0) m.softmax(heapF32(be), offsetOf(be, x), offsetOf(be, out), rows, cols, offsetOf(be, bias), nb, rows / nb);
      return out;
    }) as tfc.KernelFunc,
  });
  tf.registerKernel({
    kernelName: LAYER_NORM,
    backendName: "wasm",
    kernelFunc: ((args: KernelArgs) => {
      const be = args.backend as Backend;
      const { x, residual, gamma, beta } = args.inputs as Record<string, tfc.TensorInfo>;
      const [rows, cols] = x.shape;
      const ok = (t: tfc.TensorInfo) => t.dtype === "float32";
      if (x.shape.length !== 2 || ![x, gamma, beta].every(ok) || size(gamma.shape) !== cols || size(beta.shape) !== cols ||
          (residual && (!ok(residual) || residual.shape.join() !== x.shape.join()))) {
        throw new Error(`${LAYER_NORM}: x must be float32 [rows, cols] with gamma/beta [cols] and residual like x; got [${x.shape}]`);
      }
      const y = be.makeOutput([rows, cols], "float32"), xhat = be.makeOutput([rows, cols], "float32"), rstd = be.makeOutput([rows, 1], "float32");
      if (rows > 0) {
        m.layernorm(
          heapF32(be), offsetOf(be, x), residual ? offsetOf(be, residual) : -1, offsetOf(be, gamma), offsetOf(be, beta),
          offsetOf(be, y), offsetOf(be, xhat), offsetOf(be, rstd), rows, cols, Number(args.attrs?.eps ?? 1e-12),
        );
      }
      return [y, xhat, rstd];
    }) as unknown as tfc.KernelFunc,
  });

  const attentionGeometry = (qkv: tfc.TensorInfo, attrs: Record<string, unknown> | undefined, what: string) => {
    const heads = Number(attrs?.heads), scale = Number(attrs?.scale);
    const [R, H3] = qkv.shape;
    if (qkv.dtype !== "float32" || qkv.shape.length !== 2 || !(heads >= 1) || H3 % (3 * heads) !== 0 || !Number.isFinite(scale)) {
      throw new Error(`${what}: qkv must be float32 [rows, 3·heads·D]; got [${qkv.shape}] with heads ${heads}`);
    }
    return { R, H: H3 / 3, D: H3 / 3 / heads, heads, scale };
  };
  tf.registerKernel({
    kernelName: ATTENTION,
    backendName: "wasm",
    kernelFunc: ((args: KernelArgs) => {
      const be = args.backend as Backend;
      const { qkv, bias, drop } = args.inputs as Record<string, tfc.TensorInfo>;
      const g = attentionGeometry(qkv, args.attrs, ATTENTION);
      const B = bias.shape[0], L = g.R / B;
      if (bias.dtype !== "float32" || size(bias.shape) !== g.R || !Number.isInteger(L) || bias.shape[bias.shape.length - 1] !== L) {
        throw new Error(`${ATTENTION}: bias [${bias.shape}] must be [batch, 1, 1, L] for qkv [${qkv.shape}]`);
      }
      if (drop && (drop.dtype !== "float32" || size(drop.shape) !== B * g.heads * L * L)) throw new Error(`${ATTENTION}: drop [${drop.shape}] must be [batch·heads, L, L]`);
      const p = be.makeOutput([B * g.heads, L, L], "float32"), ctx = be.makeOutput([g.R, g.H], "float32");
      m.attention(
        heapF32(be), offsetOf(be, qkv), 3 * g.H, offsetOf(be, bias), drop ? offsetOf(be, drop) : -1, offsetOf(be, p), offsetOf(be, ctx),
        B, g.heads, L, g.D, g.scale,
      );
      return [p, ctx];
    }) as unknown as tfc.KernelFunc,
  });
  tf.registerKernel({
    kernelName: ATTENTION_GRAD,
    backendName: "wasm",
    kernelFunc: ((args: KernelArgs) => {
      const be = args.backend as Backend;
      const { qkv, p, dctx, drop } = args.inputs as Record<string, tfc.TensorInfo>;
      const g = attentionGeometry(qkv, args.attrs, ATTENTION_GRAD);
      const n = p.shape[0], L = p.shape[1], B = n / g.heads;
      if (p.shape.length !== 3 || p.shape[2] !== L || B * L !== g.R || dctx.shape.join() !== [g.R, g.H].join() || (drop && drop.shape.join() !== p.shape.join())) {
        throw new Error(`${ATTENTION_GRAD}: p [${p.shape}], dctx [${dctx.shape}] do not match qkv [${qkv.shape}]`);
      }
      const dqkv = be.makeOutput([g.R, 3 * g.H], "float32");
      m.attention_backward(
        heapF32(be), offsetOf(be, qkv), 3 * g.H, offsetOf(be, p), drop ? offsetOf(be, drop) : -1, offsetOf(be, dctx), offsetOf(be, dqkv),
        B, g.heads, L, g.D, g.scale,
      );
      return dqkv;
    }) as unknown as tfc.KernelFunc,
  });

  // each kernel falls back to the stock wasm one for the cases `run` does not take (it returns undefined)
  replace(origBmm, (args) => run(args, false));
  replace(origFused, (args) => run(args, true));
  return (status = { active: true, provider: nativeBlasProvider(m) });
}
