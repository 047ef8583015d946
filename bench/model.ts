/**
 * Model speed: training tokens/s (forward + backward + a plain SGD update) and embedding cells/s and
 * tokens/s, for the Geneformer V1 6-layer shape at 512×4 and 256×8 (tokens × batch) and for the demo
 * config, with peak RSS. Training runs on the main thread alone and data-parallel over 2 ranks (the
 * main thread + 1 worker thread, `src/train/parallel.ts`, as `training.workers: 2`: batch split by
 * cells, gradients combined, weights broadcast after the update). Each case runs in its own child
 * process so its peak RSS is its own (worker threads included).
 *
 * Reference on a 2-core machine (design notes): PyTorch 1.13, 2 threads, trains ~1,150 tokens/s
 * (512×4) and infers ~6,200 tokens/s; naive tfjs-wasm trains ~100 tokens/s.
 *
 *   npx tsx bench/model.ts                      all cases (parent)
 *   npx tsx bench/model.ts --case train:v1:512:4 [--backend wasm] [--seconds 20]
 *   npx tsx bench/model.ts --case train:v1:512:4:2          (5th field: training workers)
 *   npx tsx bench/model.ts --case embedpar:v1:512:4 --workers 2 --layer 0   (all layers, 2 worker threads)
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { BenchRow } from "./run.js";

interface CaseResult {
  tokensPerS: number;
  cellsPerS?: number;
  secPerStep: number;
  peakRssMb: number;
  backend: string;
  /** What ran the matmuls (`BackendInfo.kernels`). */
  kernels?: string;
}

const here = path.dirname(new URL(import.meta.url).pathname);

async function runCase(spec: string, backend: string, seconds: number, embedLayer = -1, embedWorkers = 2): Promise<CaseResult> {
  const tf = await import("@tensorflow/tfjs-core");
  const { initBackend } = await import("../src/backend.js");
  const { BertForMaskedLM } = await import("../src/model/bert.js");
  const { GENEFORMER_V1_6L } = await import("../src/model/config.js");
  const { embedCells } = await import("../src/embed/embed.js");
  const info = await initBackend(backend as "wasm");
  const [mode, cfgName, lStr, bStr, wStr] = spec.split(":");
  const L = +lStr, B = +bStr, W = +(wStr ?? 1);
  let config = { ...GENEFORMER_V1_6L };
  if (cfgName === "demo") {
    const yaml = await import("yaml");
    const y = yaml.parse(fs.readFileSync(path.join(here, "..", "configs", "demo.yaml"), "utf8"));
    config = { ...config, ...(y.model ?? {}) };
  }
  const { buildModel, BINNED_ENCODING, COUNTS_ENCODING } = await import("../src/model/factory.js");
  // train-binned / train-denoise: the value encodings (scGPT bins + masked-bin MLM; scPRINT counts + ZINB denoising)
  const model =
    mode === "train-binned"
      ? buildModel(config, { encoding: BINNED_ENCODING, objective: "mlm", head: { n_bins: 51 } }, { seed: 1 })
      : mode === "train-denoise"
        ? buildModel(config, { encoding: COUNTS_ENCODING, objective: "denoise", head: { likelihood: "zinb" } }, { seed: 1 })
        : new BertForMaskedLM(config, { seed: 1 });
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const V = config.vocab_size;
  const time = async (step: () => void | Promise<void>, units: number) => {
    await step(); // warm-up
    const t0 = performance.now();
    let n = 0;
    do {
      await step();
      n++;
    } while ((performance.now() - t0) / 1000 < seconds);
    const s = (performance.now() - t0) / 1000 / n;
    return { s, rate: units / s };
  };
  if (mode.startsWith("train")) {
    const ids = new Int32Array(B * L).map(() => 3 + Math.floor(rnd() * (V - 3)));
    const pos: number[] = [], lab: number[] = [];
    let values: Float32Array | undefined;
    let masked: import("../src/model/bert.js").LossTargets;
    if (mode === "train-denoise") {
      const counts = new Float32Array(B * L).map(() => 1 + Math.floor(-Math.log(1 - rnd()) * 3)); // original counts
      values = counts.map((x) => Math.floor(x * 0.45)); // downsampled input
      const lib = new Float32Array(B);
      for (let i = 0; i < B * L; i++) lib[Math.floor(i / L)] += counts[i];
      masked = { positions: Int32Array.from({ length: B * L }, (_, i) => i), targets: counts, cellScalars: lib };
    } else if (mode === "train-binned") {
      values = new Float32Array(B * L).map(() => 1 + Math.floor(rnd() * 50));
      for (let i = 0; i < B * L; i++) if (rnd() < 0.15) (pos.push(i), lab.push(values[i]), (values[i] = -1));
      masked = { positions: Int32Array.from(pos), labels: Int32Array.from(lab) };
    } else {
      for (let i = 0; i < B * L; i++) if (rnd() < 0.15) (pos.push(i), lab.push(ids[i]));
      masked = { positions: Int32Array.from(pos), labels: Int32Array.from(lab) };
    }
    const batch = {
      inputIds: tf.tensor2d(ids, [B, L], "int32"),
      attentionMask: tf.ones([B, L]) as import("@tensorflow/tfjs-core").Tensor2D,
      ...(values ? { values: tf.tensor2d(values, [B, L]) } : {}),
    };
    let k = 0;
    const sgd = (grads: Map<string, import("@tensorflow/tfjs-core").Tensor>) => {
      tf.tidy(() => {
        for (const [name, g] of grads) {
          const v = model.weights.get(name)!;
          v.assign(tf.sub(v, tf.mul(g, 1e-4)));
        }
      });
      tf.dispose([...grads.values()]);
    };
    if (W > 1) {
      // data-parallel: the batch split by cells over W ranks, then the update, then the broadcast
      const { DataParallel, shardBatch } = await import("../src/train/parallel.js");
      const dp = await DataParallel.start(model, { workers: W, backend: info.name as "wasm" });
      try {
        dp.syncWeights();
        const mb = { batch: B, seqLen: L, inputIds: ids, attentionMask: new Float32Array(B * L).fill(1), ...(values ? { values } : {}), ...masked, realTokens: B * L };
        const r = await time(async () => {
          const { grads } = await dp.lossAndGrads(shardBatch(mb, W, k++));
          sgd(grads);
          dp.syncWeights();
        }, B * L);
        return { tokensPerS: r.rate, secPerStep: r.s, peakRssMb: process.resourceUsage().maxRSS / 1024, backend: info.name, kernels: info.kernels };
      } finally {
        await dp.dispose();
      }
    }
    const r = await time(() => {
      const { grads } = model.lossAndGrads(batch, masked, { training: true, dropoutSeed: k++ });
      sgd(grads);
    }, B * L);
    return { tokensPerS: r.rate, secPerStep: r.s, peakRssMb: process.resourceUsage().maxRSS / 1024, backend: info.name, kernels: info.kernels };
  }
  const nCells = B * 4;
  const cells = Array.from({ length: nCells }, () => new Int32Array(L).map(() => 3 + Math.floor(rnd() * (V - 3))));
  if (mode === "embedpar") {
    // worker threads: 2 workers, each its own wasm backend; each timed call starts them (startup
    // included, ~1-2 s under tsx), so the call embeds 4x the single-thread cells to amortise it as
    // `cellfm embed --workers 2` does on a real dataset
    const os = await import("node:os");
    const { writeCheckpoint } = await import("../src/model/checkpoint.js");
    const { embedCellsParallel } = await import("../src/embed/parallel.js");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-bench-"));
    const ck = path.join(dir, "ck");
    writeCheckpoint(ck, {
      model,
      cellfm: { encoding: "geneformer-rank-value", objective: "mlm", model_version: "V1", dictionary: { name: "", sha256: "" }, backend: info.name, cellfm_version: "", created: "" },
    });
    const many = [...cells, ...cells, ...cells, ...cells];
    const r = await time(() => embedCellsParallel(ck, many, config.hidden_size, { workers: embedWorkers, maxTokensPerBatch: B * L, layer: embedLayer }).then(() => undefined), many.length);
    fs.rmSync(dir, { recursive: true, force: true });
    return { tokensPerS: r.rate * L, cellsPerS: r.rate, secPerStep: r.s, peakRssMb: process.resourceUsage().maxRSS / 1024, backend: info.name, kernels: info.kernels };
  }
  const r = await time(() => void embedCells(model, cells, { maxTokensPerBatch: B * L, layer: embedLayer }), nCells);
  return { tokensPerS: r.rate * L, cellsPerS: r.rate, secPerStep: r.s, peakRssMb: process.resourceUsage().maxRSS / 1024, backend: info.name, kernels: info.kernels };
}

/** Entry point for bench/run.ts. */
export async function run(opts: { quick: boolean }): Promise<BenchRow[]> {
  // the demo shape is the demo config's own (tokens per cell x cells per batch), so it follows configs/demo.yaml
  const yaml = await import("yaml");
  const demo = yaml.parse(fs.readFileSync(path.join(here, "..", "configs", "demo.yaml"), "utf8"));
  const demoShape = `demo:${demo.data.max_length}:${demo.training.batch_size}`;
  const cases = opts.quick
    ? [`train:${demoShape}`, `train:${demoShape}:2`, `embed:${demoShape}`]
    : [
        "train:v1:512:4",
        "train-binned:v1:512:4",
        "train-denoise:v1:512:4",
        "train:v1:512:4:2",
        "train:v1:256:8",
        "train:v1:256:8:2",
        "embed:v1:512:4",
        "embed:v1:256:8",
        "embedpar:v1:512:4",
        `train:${demoShape}`,
        `train:${demoShape}:2`,
        `embed:${demoShape}`,
      ];
  const seconds = opts.quick ? 3 : 20;
  const rows: BenchRow[] = [];
  for (const c of cases) {
    const res = spawnSync(process.execPath, ["--import", "tsx", path.join(here, "model.ts"), "--case", c, "--seconds", String(seconds)], {
      encoding: "utf8",
      cwd: path.join(here, ".."),
    });
    const line = (res.stdout ?? "").split("\n").find((l) => l.startsWith("RESULT "));
    if (!line) {
      rows.push({ area: "model", case: c, metric: "error", value: NaN, unit: "", note: (res.stderr ?? "").trim().split("\n").slice(-3).join(" ") });
      continue;
    }
    const r = JSON.parse(line.slice(7)) as CaseResult;
    const [mode, cfg, L, B, W] = c.split(":");
    const threads = mode === "embedpar" ? ", 2 worker threads incl. startup" : W ? `, workers ${W}` : "";
    const task = mode === "train-binned" ? " binned-MLM" : mode === "train-denoise" ? " counts-denoise (ZINB)" : "";
    const name = `${cfg === "v1" ? "Geneformer V1 6L" : "demo config"}${task} ${L}x${B} (${r.backend}${threads})`;
    if (mode.startsWith("train")) {
      const ref = mode !== "train" ? "goal: within 1.3x of rank-MLM's tokens/s (issue 9)" : cfg === "v1" ? `PyTorch 2 threads: ~1,150 (512x4; 1,310 measured on the dev machine)` : undefined;
      rows.push({ area: "model", case: `train ${name}`, metric: "tokens/s", value: r.tokensPerS, unit: "tok/s", note: ref });
    } else {
      rows.push({ area: "model", case: `embed ${name}`, metric: "cells/s", value: r.cellsPerS!, unit: "cells/s" });
      rows.push({ area: "model", case: `embed ${name}`, metric: "tokens/s", value: r.tokensPerS, unit: "tok/s", note: "PyTorch 2 threads: ~6,200" });
    }
    rows.push({ area: "model", case: `${mode.startsWith("train") ? "train" : mode} ${name}`, metric: "peak RSS", value: r.peakRssMb, unit: "MB" });
  }
  return rows;
}

const argv = process.argv.slice(2);
const ci = argv.indexOf("--case");
if (ci >= 0) {
  const get = (k: string, d: string) => (argv.indexOf(k) >= 0 ? argv[argv.indexOf(k) + 1] : d);
  // --layer: embedding layer (-1 = second-to-last, as `cellfm embed`; 0 = all layers); --workers: embedpar threads
  const r = await runCase(argv[ci + 1], get("--backend", "wasm"), +get("--seconds", "20"), +get("--layer", "-1"), +get("--workers", "2"));
  console.log("RESULT " + JSON.stringify(r));
} else if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await run({ quick: argv.includes("--quick") })) console.log(JSON.stringify(r));
}
