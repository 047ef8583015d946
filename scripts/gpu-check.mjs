// The GPU check behind scripts/gpu-check.sh (see there and docs/gpu.md): prints the WebGPU adapter,
// trains the Geneformer V1 6-layer model (configs/geneformer-v1-6L.yaml) at 512 x 4 on pbmc3k for a
// fixed number of steps with --backend webgpu, embeds the cells, and prints tokens/s next to the
// PyTorch peer (bench/peers/pytorch_bert.py) on the same GPU when `torch` imports.
// Runs the built package (dist/, made by `npm ci`).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
// --smoke: the whole flow at a size a software adapter (SwiftShader) finishes in minutes; each
// setting below still overrides it. Not a measurement.
const smoke = args.includes("--smoke");
const steps = Number(opt("--steps", smoke ? "1" : "60"));
const seq = Number(opt("--seq", smoke ? "32" : "512"));
const batch = Number(opt("--batch", smoke ? "2" : "4"));
const layers = opt("--layers", smoke ? "1" : undefined); // smoke tests on a software adapter only
const cells = Number(opt("--cells", smoke ? "20" : "0")); // embed about this many cells (0 = all 2,700)
const evalCells = opt("--eval-cells", smoke ? String(batch) : undefined); // held-out cells evaluated (default: the config's)
const allowFallback = smoke || args.includes("--allow-fallback");
const backend = opt("--backend", "webgpu"); // wasm: checks this script's flow on a CPU machine, nothing more
const python = process.env.CELLFM_BENCH_PYTHON ?? "python3";
const say = (s) => process.stdout.write(s + "\n");
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");

const { probeWebGPU, describeAdapter } = await import(path.join(root, "dist", "webgpu.js"));
const adapter = backend === "webgpu" ? probeWebGPU() : { vendor: "", architecture: "", description: `--backend ${backend}`, fallback: true };
if (!adapter) {
  say("gpu-check: no WebGPU adapter. A GPU server needs its vendor's Vulkan driver (NVIDIA: the driver's Vulkan ICD; in containers");
  say("           NVIDIA_DRIVER_CAPABILITIES must include graphics, e.g. =compute,utility,graphics). `vulkaninfo --summary` lists what Vulkan sees.");
  process.exit(1);
}
say(`adapter: ${describeAdapter(adapter)}`);
if (adapter.fallback && !allowFallback) {
  say("gpu-check: this is a software adapter (a CPU emulator), not a GPU; stopping (pass --allow-fallback with small --steps/--seq to smoke-test)");
  process.exit(1);
}
const smi = spawnSync("nvidia-smi", ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], { encoding: "utf8" });
if (smi.status === 0) say(`nvidia-smi: ${smi.stdout.trim()}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-gpu-check-"));
const { main } = await import(path.join(root, "dist", "cli.js"));
const { parseTrainConfig } = await import(path.join(root, "dist", "train", "config.js"));
const { train } = await import(path.join(root, "dist", "train", "loop.js"));
const { embedToFile } = await import(path.join(root, "dist", "embed", "run.js"));
const { readTokenizedDataset } = await import(path.join(root, "dist", "data", "tokenized.js"));
try {
  const tokens = path.join(tmp, "tokens");
  say(`tokenizing pbmc3k (${new Date().toISOString()})`);
  await main(["tokenize", "--input", path.join(root, "data", "pbmc3k_seurat.h5ad"), "--model-version", "V1", "--output", tokens, "--quiet"]);

  // the 6-layer config as shipped, with this check's shape and budget
  const base = parseYaml(fs.readFileSync(path.join(root, "configs", "geneformer-v1-6L.yaml"), "utf8"));
  const out = path.join(tmp, "model");
  const config = parseTrainConfig(
    {
      ...base,
      model: { ...base.model, ...(layers ? { num_hidden_layers: Number(layers) } : {}) },
      data: { ...base.data, tokens, max_length: seq },
      training: {
        ...base.training,
        batch_size: batch,
        epochs: undefined,
        max_steps: steps,
        warmup_steps: 10,
        eval_every: 0,
        save_every: 0,
        log_every: 1,
        ...(evalCells ? { eval_cells: Number(evalCells) } : {}),
      },
      output: { dir: out },
      backend,
    },
    "configs/geneformer-v1-6L.yaml (gpu-check)",
  );
  const t0 = performance.now();
  const r = await train(config, { quiet: !args.includes("--verbose"), force: true, handleSigint: false });
  const trainSec = (performance.now() - t0) / 1000;
  const rows = fs
    .readFileSync(path.join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((m) => m.tokens_per_s !== undefined);
  // steady state: skip the first 5 steps (shader compilation, buffer pools)
  const steady = rows.filter((m) => m.step > Math.min(5, steps - 1));
  const tps = steady.length / steady.reduce((a, m) => a + 1 / m.tokens_per_s, 0);
  say(`train: ${r.step} steps at ${seq} x ${batch} on ${r.backend.name}, loss ${rows[0].loss.toFixed(3)} -> ${rows[rows.length - 1].loss.toFixed(3)}, ${trainSec.toFixed(1)} s in all`);

  const e = await embedToFile({ checkpoint: r.checkpoint, input: tokens, output: path.join(tmp, "emb.arrow"), quiet: true, backend, ...(cells > 0 ? { shard: { index: 0, count: Math.ceil(2700 / cells) } } : {}) });
  const maxPos = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8")).max_position_embeddings;
  const nTokens = readTokenizedDataset(tokens).inputIds.slice(0, e.nCells).reduce((a, c) => a + Math.min(c.length, maxPos), 0);
  const embTps = nTokens / e.seconds;
  say(`embed: ${e.nCells} cells (${nTokens} tokens) in ${e.seconds.toFixed(1)} s: ${f1(e.cellsPerSecond)} cells/s, ${f1(embTps)} tokens/s`);

  // PyTorch on the same GPU
  const peer = (mode) => {
    const p = spawnSync(python, [path.join(root, "bench", "peers", "pytorch_bert.py"), "--seq", String(seq), "--batch", String(batch), "--mode", mode, "--head", "masked", "--device", "cuda", "--reps", "2", "--min-sec", "3"], { encoding: "utf8" });
    const line = (p.stdout ?? "").split("\n").find((l) => l.startsWith("RESULT "));
    return line ? JSON.parse(line.slice(7)) : { why: (p.stderr || p.error?.message || "no output").trim().split("\n").pop() };
  };
  const hasTorch = spawnSync(python, ["-c", "import torch; assert torch.cuda.is_available()"], { encoding: "utf8" }).status === 0;
  const pt = hasTorch ? peer("train") : { why: `${python} has no torch with CUDA` };
  const ptInfer = hasTorch ? peer("infer") : pt;
  say("");
  say(`| work (V1 ${layers ?? 6}L, ${seq} x ${batch}) | cellfm ${r.backend.name} tokens/s | PyTorch tokens/s | ratio |`);
  say("|---|---|---|---|");
  say(`| train (fwd + bwd + AdamW, MLM at masked positions) | ${f1(tps)} | ${pt.tokens_per_s ? f1(pt.tokens_per_s) : `- (${pt.why})`} | ${pt.tokens_per_s ? (tps / pt.tokens_per_s).toFixed(2) : "-"} |`);
  say(`| embed (encoder forward + mean pool; cellfm: pbmc3k cells, padded batches) | ${f1(embTps)} | ${ptInfer.tokens_per_s ? f1(ptInfer.tokens_per_s) : "-"} | ${ptInfer.tokens_per_s ? (embTps / ptInfer.tokens_per_s).toFixed(2) : "-"} |`);
  if (pt.device_name) say(`PyTorch ${pt.version} on ${pt.device_name}`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
