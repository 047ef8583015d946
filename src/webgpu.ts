/**
 * WebGPU for TensorFlow.js in Node: `@tensorflow/tfjs-backend-webgpu` 4.22 on Dawn, the WebGPU
 * implementation of Chromium, through the `webgpu` npm package (dawn-gpu/node-webgpu; its prebuilt
 * `dawn.node` ships inside the package, nothing downloads at install). On Linux Dawn drives the GPU
 * through Vulkan, so a GPU server needs its vendor's Vulkan driver (NVIDIA: the driver's Vulkan ICD,
 * `nvidia_icd.json`; in containers `NVIDIA_DRIVER_CAPABILITIES` must include `graphics`), no CUDA.
 *
 * What Node lacks and this module supplies before the backend is loaded:
 * - `navigator.gpu` and the `GPUBufferUsage`/`GPUMapMode`/... globals (from `webgpu`'s `globals`);
 *   tfjs-backend-webgpu registers itself at import only when `navigator.gpu` exists.
 * - `GPUAdapter.prototype.requestAdapterInfo`, which left the WebGPU spec (replaced by
 *   `adapter.info`) but which tfjs 4.22 still calls: shimmed to return `adapter.info`.
 * - `XDG_RUNTIME_DIR`, which Vulkan loaders/drivers complain about when unset: set to a private
 *   directory under the OS temp dir when missing (this process only).
 *
 * Synchronous reads (`dataSync`, `arraySync`) do not work on this backend in Node: tfjs implements
 * them through `OffscreenCanvas`, a browser API. Code on the webgpu path reads with `await t.data()`
 * (or {@link readScalars}); a tensor read that way keeps its values on the host, so a later
 * `dataSync()` of the same tensor works.
 *
 * A CPU machine can run the same backend on a software Vulkan driver: Chromium's SwiftShader (Debian
 * `chromium`, `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`). Dawn reports it as a
 * *fallback* adapter; `--backend auto` never takes a fallback adapter (it is ~100× slower than wasm),
 * only `--backend webgpu` does. Mesa's lavapipe is refused by Dawn (no adapter).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { concat, getBackend, reshape, type Scalar, type Tensor, tidy } from "@tensorflow/tfjs-core";

/** The WebGPU adapter as Dawn describes it (`GPUAdapterInfo`). */
export interface WebGPUAdapter {
  /** e.g. "nvidia", "google" */
  vendor: string;
  /** e.g. "hopper", "swiftshader" */
  architecture: string;
  /** e.g. "swiftshader-device-subzero-" */
  device: string;
  /** driver description, e.g. "NVIDIA: 550.54.15" or "SwiftShader driver 5.0.0" */
  description: string;
  /** true for software/CPU adapters (SwiftShader): correctness only, never chosen by `auto`. */
  fallback: boolean;
}

/** Where Debian's `chromium` package puts SwiftShader's Vulkan ICD (tests and docs point `VK_ICD_FILENAMES` here). */
export const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

/** One line naming an adapter, e.g. `nvidia hopper (NVIDIA: 550.54.15)`. */
export function describeAdapter(a: WebGPUAdapter): string {
  const name = [a.vendor, a.architecture].filter(Boolean).join(" ") || "unknown adapter";
  return `${name}${a.description ? ` (${a.description})` : ""}${a.fallback ? ", a software/fallback adapter" : ""}`;
}

function ensureXdgRuntimeDir(): void {
  if (process.env.XDG_RUNTIME_DIR) return;
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  const dir = path.join(os.tmpdir(), `cellfm-xdg-${uid}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}

interface DawnAdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}
interface DawnAdapter {
  info?: DawnAdapterInfo;
  isFallbackAdapter?: boolean;
}
interface DawnGPU {
  requestAdapter(o?: { powerPreference?: string }): Promise<DawnAdapter | null>;
}

function summarize(a: DawnAdapter): WebGPUAdapter {
  const i = a.info ?? {};
  return {
    vendor: i.vendor ?? "",
    architecture: i.architecture ?? "",
    device: i.device ?? "",
    description: i.description ?? "",
    fallback: Boolean(i.isFallbackAdapter ?? a.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe/i.test(`${i.architecture} ${i.description}`),
  };
}

let installed: Promise<WebGPUAdapter> | undefined;

/**
 * Load Dawn into this process, install `navigator.gpu`, the WebGPU globals and the
 * `requestAdapterInfo` shim, and return the adapter tfjs will get (`powerPreference:
 * "high-performance"`, as tfjs-backend-webgpu asks). Idempotent. Must run before
 * `@tensorflow/tfjs-backend-webgpu` is imported.
 * @throws Error when the `webgpu` package cannot load or no adapter exists (message says what a
 *   GPU server needs, and how to use SwiftShader on a CPU machine).
 */
export function installWebGPU(): Promise<WebGPUAdapter> {
  installed ??= (async () => {
    ensureXdgRuntimeDir();
    let mod: { create: (o: string[]) => DawnGPU; globals: Record<string, unknown> };
    try {
      mod = (await import("webgpu")) as unknown as typeof mod;
    } catch (e) {
      throw new Error(`backend 'webgpu' needs the 'webgpu' package (Dawn), which could not be loaded: ${(e as Error).message.split("\n")[0]}`);
    }
    const g = globalThis as Record<string, unknown>;
    for (const [k, v] of Object.entries(mod.globals)) if (!(k in g)) g[k] = v;
    const gpu = mod.create([]);
    const nav = (g.navigator ??= {}) as Record<string, unknown>;
    Object.defineProperty(nav, "gpu", { value: gpu, configurable: true, enumerable: true });
    const proto = (g.GPUAdapter as { prototype?: Record<string, unknown> } | undefined)?.prototype;
    if (proto && !("requestAdapterInfo" in proto)) {
      proto.requestAdapterInfo = async function (this: DawnAdapter) {
        return this.info;
      };
    }
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      throw new Error(
        "backend 'webgpu': no WebGPU adapter (Dawn found no usable Vulkan driver). A GPU server needs the vendor's " +
          "Vulkan ICD (NVIDIA: the driver's nvidia_icd.json; in containers NVIDIA_DRIVER_CAPABILITIES must include graphics); " +
          `on a CPU machine, for tests only: apt-get install chromium libvulkan1 and VK_ICD_FILENAMES=${SWIFTSHADER_ICD}`,
      );
    }
    return summarize(adapter);
  })();
  installed.catch(() => {
    installed = undefined;
  });
  return installed;
}

let deviceError: string | undefined;

/**
 * Record the first validation/out-of-memory error and a device loss of tfjs's WebGPU device. Dawn
 * reports these asynchronously and tfjs ignores them, while the failed command buffer's work is
 * silently dropped (measured: an over-limit kernel made the step's loss wrong, with no exception);
 * {@link throwIfWebGPUFailed} turns them into an error at the next read.
 * @param backend the active tfjs backend (`tf.backend()`); anything without a `device` is ignored.
 */
export function watchWebGPUDevice(backend: unknown): void {
  const device = (backend as { device?: { addEventListener?: (t: string, f: (e: { error?: { message?: string } }) => void) => void; lost?: Promise<{ message?: string }> } }).device;
  if (!device?.addEventListener) return;
  device.addEventListener("uncapturederror", (e) => {
    deviceError ??= (e.error?.message ?? "unknown error").split("\n")[0];
  });
  device.lost?.then((info) => {
    deviceError ??= `device lost: ${info?.message ?? "no reason given"}`;
  });
}

/**
 * @throws Error with the WebGPU device's first error since the backend started (see
 *   {@link watchWebGPUDevice}) while webgpu is the active backend; nothing otherwise.
 */
export function throwIfWebGPUFailed(): void {
  if (deviceError && getBackend() === "webgpu") throw new Error(`WebGPU device error (results after it are invalid): ${deviceError}`);
}

/**
 * Read scalar tensors to numbers with one asynchronous device read (stacked first), on any backend:
 * what the training loop's evaluations go through, so they wait on a GPU once. The inputs are not
 * disposed.
 * @throws Error when the WebGPU device reported an error ({@link throwIfWebGPUFailed}).
 */
export async function readScalars(xs: Scalar[]): Promise<number[]> {
  return Array.from(await readValues(xs));
}

/**
 * Read tensors of any shape with one asynchronous device read: their values flattened and
 * concatenated in order (a training step's losses, loss terms and squared gradient norm). The
 * inputs are not disposed.
 * @throws Error when the WebGPU device reported an error ({@link throwIfWebGPUFailed}).
 */
export async function readValues(xs: Tensor[]): Promise<Float32Array> {
  if (xs.length === 0) return new Float32Array(0);
  const all = tidy(() => concat(xs.map((x) => reshape(x, [-1]))));
  try {
    const v = (await all.data()) as Float32Array;
    throwIfWebGPUFailed();
    return v;
  } finally {
    all.dispose();
  }
}

/** Child-process probe: prints the adapter as JSON (or `null`), nothing else on stdout. */
const PROBE = `
const { create } = await import(process.argv[1]);
const a = await create([]).requestAdapter({ powerPreference: "high-performance" });
const i = a ? a.info : undefined;
process.stdout.write(JSON.stringify(i ? { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: i.isFallbackAdapter } : null));
process.exit(0);
`;

/**
 * Whether a WebGPU adapter exists, asked in a child process so that a machine without one pays no
 * Dawn start-up in this process and its Vulkan loader's warnings (printed by native code to stderr)
 * stay out of this command's output. ~0.1–0.3 s. Used by `--backend auto`.
 * @returns the adapter, or undefined where there is none or `webgpu` is not installed.
 */
export function probeWebGPU(): WebGPUAdapter | undefined {
  let entry: string;
  try {
    entry = import.meta.resolve("webgpu");
  } catch {
    return undefined;
  }
  ensureXdgRuntimeDir();
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", PROBE, entry], {
    encoding: "utf8",
    timeout: 30_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (r.status !== 0 || !r.stdout) return undefined;
  try {
    const info = JSON.parse(r.stdout) as DawnAdapterInfo | null;
    return info ? summarize({ info }) : undefined;
  } catch {
    return undefined;
  }
}
