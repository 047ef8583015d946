/**
 * Where a training step's time goes: one Geneformer V1 6-layer step (forward + backward, `lossAndGrads`)
 * under `tf.profile`, kernel times summed per op class (matmul, softmax, layer norm, element-wise, gather,
 * ...) plus the time outside kernels (JS: tape, gradient bookkeeping, allocation). One thread, wasm.
 *
 *   npx tsx bench/profile.ts [--seq 512] [--batch 4] [--backend wasm] [--mode train|infer]
 */
import * as path from "node:path";

const argv = process.argv.slice(2);
const get = (k: string, d: string) => (argv.indexOf(k) >= 0 ? argv[argv.indexOf(k) + 1] : d);

/** Op class of a tfjs kernel name. */
export function opClass(kernel: string): string {
  if (/^(BatchMatMul|_FusedMatMul|MatMul)$/.test(kernel)) return "matmul";
  if (/Softmax|LogSoftmax/.test(kernel)) return "softmax";
  if (/^(Gather|GatherV2|GatherNd|ScatterNd|UnsortedSegmentSum|OneHot|SparseToDense)$/.test(kernel)) return "gather/scatter";
  if (/^(Sum|Mean|Max|Min|Prod)$/.test(kernel)) return "reduction";
  if (/^(Transpose|Reshape|Concat|Slice|Pack|Unpack|Tile|Pad|PadV2|Cast|Identity|Fill|ZerosLike|StridedSlice|ExpandDims|Squeeze|BroadcastTo)$/.test(kernel)) return "layout (transpose/slice/concat/cast)";
  if (/^(Relu|Gelu|Erf|Tanh|Sigmoid|Step|Exp|Log|Sqrt|Rsqrt|Square|Neg|Reciprocal|Abs|Sign)$/.test(kernel)) return "element-wise unary";
  if (/^(Add|AddN|Sub|Mul|Multiply|RealDiv|Div|Maximum|Minimum|Pow|SquaredDifference|Greater|GreaterEqual|Less|LessEqual|Equal|Select|Where|FloorDiv|LogicalAnd)$/.test(kernel)) return "element-wise binary";
  if (/RandomUniform|Multinomial|Dropout/.test(kernel)) return "random";
  return `other (${kernel})`;
}

async function main(): Promise<void> {
  const tf = await import("@tensorflow/tfjs-core");
  const { initBackend } = await import("../src/backend.js");
  const { BertForMaskedLM } = await import("../src/model/bert.js");
  const { GENEFORMER_V1_6L } = await import("../src/model/config.js");
  const info = await initBackend(get("--backend", "wasm") as "wasm");
  const L = +get("--seq", "512");
  const B = +get("--batch", "4");
  const mode = get("--mode", "train");
  const config = { ...GENEFORMER_V1_6L };
  const model = new BertForMaskedLM(config, { seed: 1 });
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const ids = new Int32Array(B * L).map(() => 3 + Math.floor(rnd() * (config.vocab_size - 3)));
  const batch = { inputIds: tf.tensor2d(ids, [B, L], "int32"), attentionMask: tf.ones([B, L]) as import("@tensorflow/tfjs-core").Tensor2D };
  const pos: number[] = [];
  const lab: number[] = [];
  for (let i = 0; i < B * L; i++) if (rnd() < 0.15) (pos.push(i), lab.push(ids[i]));
  const masked = { positions: Int32Array.from(pos), labels: Int32Array.from(lab) };
  const step = () => {
    if (mode === "train") {
      const { grads } = model.lossAndGrads(batch, masked, { training: true, dropoutSeed: 1 });
      tf.dispose([...grads.values()]);
    } else {
      const out = model.forward(batch, { training: false, outputHiddenStates: false });
      tf.dispose(out.lastHiddenState);
    }
  };
  step(); // warm-up
  step();
  const t0 = performance.now();
  const reps = 3;
  for (let i = 0; i < reps; i++) step();
  const wallMs = (performance.now() - t0) / reps;
  const tp = performance.now();
  const prof = await tf.profile(() => void step());
  const profMs = performance.now() - tp;
  const byClass = new Map<string, { ms: number; n: number }>();
  const byKernel = new Map<string, { ms: number; n: number }>();
  let kernelMs = 0;
  // only backend kernels: tf.profile also lists the op scopes around them (custom gradients, fused ops)
  for (const k of prof.kernels.filter((x) => tf.getKernel(x.name, info.name) !== undefined)) {
    const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    kernelMs += ms;
    for (const [m, key] of [[byClass, opClass(k.name)], [byKernel, k.name]] as const) {
      const e = m.get(key) ?? { ms: 0, n: 0 };
      e.ms += ms;
      e.n++;
      m.set(key, e);
    }
  }
  const lines = [
    `${mode} step, Geneformer V1 6L, ${L} x ${B}, ${info.name}, one thread: ${wallMs.toFixed(0)} ms per step unprofiled (${((B * L) / (wallMs / 1000)).toFixed(0)} tokens/s), ${profMs.toFixed(0)} ms profiled`,
  ];
  lines.push("| op class | ms in the profiled step | % | kernels |", "|---|---|---|---|");
  const rows = [...byClass].sort((a, b) => b[1].ms - a[1].ms);
  for (const [c, e] of rows) lines.push(`| ${c} | ${e.ms.toFixed(1)} | ${((100 * e.ms) / profMs).toFixed(1)} | ${e.n} |`);
  lines.push(`| outside kernels (JS, tape, allocation, profiler) | ${(profMs - kernelMs).toFixed(1)} | ${((100 * (profMs - kernelMs)) / profMs).toFixed(1)} | |`);
  lines.push("", "top kernels: " + [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12).map(([k, e]) => `${k} ${e.ms.toFixed(1)} ms (${e.n})`).join(", "));
  console.log(lines.join("\n"));
}

if (path.resolve(process.argv[1] ?? "") === path.resolve(new URL(import.meta.url).pathname)) await main();
