/**
 * Training-loop speed: the whole `cellfm train` step (MLM collation, forward + backward, gradient
 * clipping, AdamW over every weight, logging) on the demo config over the real pbmc3k cells, in
 * tokens/s (real, non-pad tokens) with the MFU the loop reports and the peak RSS of the process
 * (worker threads included), with `training.workers` 1 (main thread only) and 2 (data-parallel,
 * the demo's setting). The model-only numbers for the Geneformer V1 6-layer shapes are in
 * bench/model.ts. Cell-level objectives (`training.objectives`, issue 17 §3) get rows of their own at
 * workers 1, next to the token objective alone at workers 1: mlm + mvc, mvc alone (max pooling),
 * mlm + bottleneck (2,000 HVGs, NB) and mlm + contrastive 0.1 (its two views are rows of the same
 * forward pass, so its tokens/s counts them; `max_tokens_per_batch` is tripled to keep 32 cells).
 *
 *   npx tsx bench/train.ts                  (parent: tokenizes pbmc3k once, runs each case in a child)
 *   npx tsx bench/train.ts --child <tokens> <out> <steps> <workers> [<objectives JSON> <pooling>]
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BenchRow } from "./run.js";

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, "..");

async function child(tokens: string, out: string, steps: number, workers: number, objectives?: Record<string, number>, pooling?: string): Promise<void> {
  const { loadTrainConfig, parseTrainConfig } = await import("../src/train/config.js");
  const { train } = await import("../src/train/loop.js");
  const base = loadTrainConfig(path.join(root, "configs", "demo.yaml"));
  const c = parseTrainConfig(
    {
      model: { ...base.model, ...(pooling ? { pooling } : {}) },
      data: { ...base.data, tokens },
      training: {
        ...base.training,
        max_steps: steps,
        eval_every: 0,
        save_every: 0,
        log_every: 1,
        workers,
        ...(objectives ? { objectives } : {}),
        // the contrastive views are rows of their own: 3 × the tokens keeps the micro-batch's cells
        ...(objectives?.contrastive && base.training.max_tokens_per_batch ? { max_tokens_per_batch: 3 * base.training.max_tokens_per_batch } : {}),
      },
      output: { dir: out },
      backend: process.env.CELLFM_BENCH_BACKEND ?? "wasm",
    },
    "bench(demo.yaml)",
  );
  const times: number[] = [];
  let last = performance.now();
  const r = await train(c, {
    quiet: true,
    force: true,
    handleSigint: false,
    onStep: () => {
      const now = performance.now();
      times.push((now - last) / 1000);
      last = now;
    },
  });
  // per-step tokens/s from metrics.jsonl (log_every 1), skipping the first 2 steps (warm-up)
  const metrics = fs
    .readFileSync(path.join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { step: number; tokens_per_s?: number; mfu?: number })
    .filter((m) => m.tokens_per_s !== undefined && m.step > 2);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  // harmonic mean of per-step rates = total tokens / total time for equal-token steps
  const tps = metrics.length ? metrics.length / metrics.reduce((a, m) => a + 1 / m.tokens_per_s!, 0) : NaN;
  const result = {
    tokensPerS: tps,
    mfu: mean(metrics.map((m) => m.mfu!)),
    secPerStep: mean(times.slice(2)),
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    backend: r.backend.name,
    steps: r.step,
  };
  process.stdout.write("RESULT " + JSON.stringify(result) + "\n");
}

/** Benchmark entry point for bench/run.ts. */
export async function run(opts: { quick: boolean }): Promise<BenchRow[]> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-bench-train-"));
  try {
    let tokens = path.join(root, "runs", "demo", "tokens");
    if (!fs.existsSync(path.join(tokens, "manifest.json"))) {
      tokens = path.join(tmp, "tokens");
      const { main } = await import("../src/cli.js");
      await main(["tokenize", "--input", path.join(root, "data", "pbmc3k_seurat.h5ad"), "--model-version", "V1", "--output", tokens, "--quiet"]);
    }
    const steps = opts.quick ? 6 : 30;
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const rows: BenchRow[] = [];
    // [workers, training.objectives, model.pooling]: the demo (mlm) at workers 1 and 2, then cell-level terms at workers 1
    const cases: [number, Record<string, number> | undefined, string | undefined][] = [
      [1, undefined, undefined],
      [2, undefined, undefined],
      [1, { mlm: 1, mvc: 1 }, undefined],
      [1, { mvc: 1 }, "max"],
      [1, { mlm: 1, bottleneck: 1 }, undefined],
      [1, { mlm: 1, contrastive: 0.1 }, undefined],
    ];
    for (const [k, [workers, objectives, pooling]] of cases.entries()) {
      const extra = objectives ? [JSON.stringify(objectives), pooling ?? ""] : [];
      const p = spawnSync(tsx, [path.join(here, "train.ts"), "--child", tokens, path.join(tmp, `out${k}`), String(steps), String(workers), ...extra], {
        encoding: "utf8",
        maxBuffer: 1 << 26,
      });
      const line = (p.stdout ?? "").split("\n").find((l) => l.startsWith("RESULT "));
      if (!line) throw new Error(`training benchmark child failed: ${(p.stderr ?? "").slice(-2000)}`);
      const r = JSON.parse(line.slice(7)) as { tokensPerS: number; mfu: number; secPerStep: number; peakRssMb: number; backend: string; steps: number };
      const terms = objectives ? `, objectives ${Object.entries(objectives).map(([t, w]) => `${t} ${w}`).join(" + ")}${pooling ? `, ${pooling} pooling` : ""}` : "";
      const caseName = `cellfm train, configs/demo.yaml on pbmc3k${terms}, workers ${workers} (${steps} steps)`;
      const note = `backend ${r.backend}; real tokens; full step incl. AdamW`;
      rows.push(
        { area: "train", case: caseName, metric: "throughput", value: r.tokensPerS, unit: "tokens/s", note },
        { area: "train", case: caseName, metric: "step time", value: r.secPerStep, unit: "s/step", note },
        { area: "train", case: caseName, metric: "MFU", value: r.mfu * 100, unit: "%", note: "of the peak in run.json (wasm: 40 GFLOP/s per rank)" },
        { area: "train", case: caseName, metric: "peak RSS", value: r.peakRssMb, unit: "MB", note },
      );
    }
    return rows;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--child") {
  const objectives = process.argv[7] ? (JSON.parse(process.argv[7]) as Record<string, number>) : undefined;
  await child(process.argv[3], process.argv[4], Number(process.argv[5]), Number(process.argv[6] ?? 1), objectives, process.argv[8] || undefined);
} else if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await run({ quick: process.argv.includes("--quick") })) console.log(r);
}
