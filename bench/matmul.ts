/**
 * The matmul ceiling of the model benchmarks: FP32 GFLOP/s of one `tf.matMul` on the backend cellfm
 * uses here (tfjs-wasm with the native BLAS kernels of src/blas.ts where built, one BLAS thread, else
 * XNNPACK; one thread either way: tfjs-wasm runs single-threaded in Node), at the shapes that
 * dominate a Geneformer V1 6-layer training step at 512 × 4 (2,048 tokens × hidden 256: the Q/K/V/output
 * projections 256 → 256 and the FFN 256 → 512 and 512 → 256) and at 2,048³. Printed as JSON for
 * `bench/compare.ts`, which puts it next to PyTorch's at the same shapes (`bench/peers/matmul_shapes.py`).
 * Matmuls are ~80 % of a training step (`bench/profile.ts`), so cores × this one-thread rate is the
 * most a data-parallel wasm step can multiply at, whatever the rest of the step costs.
 *
 *   npx tsx bench/matmul.ts [--backend wasm] [--seconds 2] [--peak]
 *
 * `--peak`: 2,048³ alone, the machine's one-thread matmul peak on cellfm's kernels (the MFU
 * denominator of `bench/compare.ts`).
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/backend.js";

/** [m, k, n] of each measured product (m × k) · (k × n). */
export const MATMUL_SHAPES: Record<string, [number, number, number]> = {
  attn_proj_2048x256x256: [2048, 256, 256],
  ffn_2048x256x512: [2048, 256, 512],
  ffn_out_2048x512x256: [2048, 512, 256],
  square_2048: [2048, 2048, 2048],
  qkv_2048x256x768: [2048, 256, 768],
};

/** [batch, m, k, n] of the attention products per (cell, head) at 512 × 4 with 4 heads of 64. */
export const BATCHED_SHAPES: Record<string, [number, number, number, number]> = {
  attn_scores_16x512x64x512: [16, 512, 64, 512],
  attn_context_16x512x512x64: [16, 512, 512, 64],
};

/** GFLOP/s of `a · b` for `[m, k, n]`, repeated for at least `seconds` after a warm-up. */
export function matmulGflops([m, k, n]: [number, number, number], seconds: number, batch?: number): number {
  const a = tf.randomUniform(batch ? [batch, m, k] : [m, k]), b = tf.randomUniform(batch ? [batch, k, n] : [k, n]);
  tf.matMul(a, b).dispose(); // warm-up (XNNPACK packs the weights once)
  let reps = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || reps < 3) {
    const c = tf.matMul(a, b);
    c.dataSync(); // the wasm backend is synchronous; reading back keeps the timing honest on any backend
    c.dispose();
    reps++;
  }
  const s = (performance.now() - t0) / 1000;
  a.dispose();
  b.dispose();
  return (2 * (batch ?? 1) * m * k * n * reps) / s / 1e9;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf("--backend");
  const j = process.argv.indexOf("--seconds");
  const info = await initBackend((i >= 0 ? process.argv[i + 1] : "wasm") as "wasm");
  const seconds = j >= 0 ? Number(process.argv[j + 1]) : 2;
  const out: Record<string, number | string> = { backend: info.name, kernels: info.kernels };
  const peakOnly = process.argv.includes("--peak");
  for (const [name, shape] of Object.entries(MATMUL_SHAPES)) if (!peakOnly || name === "square_2048") out[name] = matmulGflops(shape, seconds);
  if (!peakOnly) for (const [name, [b, m, k, n]] of Object.entries(BATCHED_SHAPES)) out[name] = matmulGflops([m, k, n], seconds, b);
  console.log("RESULT " + JSON.stringify(out)); // the line bench/compare.ts reads
}
