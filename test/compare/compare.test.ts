/**
 * `cellfm compare` end to end on the bundled tiny real data (300 PBMCs, 6 types): two arms, a tiny
 * model and a budget of a few steps; resume after an interruption; config errors before training.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCompareConfig, tokensKey } from "../../src/compare/config.js";
import { runCompare } from "../../src/compare/run.js";

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-compare-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A two-arm comparison on data/tiny.h5ad: rank × mlm against counts × denoise (scored on denoising). */
function raw(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    data: { input: "data/tiny.h5ad", label: "cell_type", max_length: 32, val_fraction: 0.2 },
    seeds: [1],
    model: { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32 },
    training: { max_tokens: 2500, batch_size: 16, lr: 3.0e-3, warmup_steps: 1, log_every: 1, eval_every: 2, eval_cells: 32, save_every: 2 },
    assess: { min_cells: 40, per_type: 40, n_hvg: 200, threads: 1, umap_epochs: 20 },
    denoise: { n_hvg: 200, n_pcs: 10 },
    arms: [
      { name: "rank-mlm", encoding: "rank", objective: "mlm" },
      { name: "counts-denoise", encoding: "counts", objective: "denoise", training: { noise: 0.7, downsample: "binomial" } },
    ],
    backend: "wasm",
    ...over,
  };
}

const metricsRows = (out: string, arm: string, seed = 1) =>
  fs
    .readFileSync(path.join(out, arm, `seed-${seed}`, "train", "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { step: number; tokens?: number; loss?: number; val_loss?: number });

describe("cellfm compare", () => {
  let straight: string;
  let lines: string[];
  it("runs two arms end to end with an equal token budget and writes the report", async () => {
    straight = path.join(tmp, "straight");
    lines = [];
    const r = await runCompare({ config: parseCompareConfig(raw(), "test.yaml"), output: straight, log: (l) => lines.push(l) });
    expect(r.interrupted).toBe(false);
    for (const f of ["report.md", "report.html", "compare.json", "figures/curves.svg", "figures/curves.png"]) expect(fs.existsSync(path.join(straight, f))).toBe(true);
    for (const arm of ["rank-mlm", "counts-denoise"]) {
      for (const f of ["seed-1/train/final/model.safetensors", "seed-1/untrained/config.json", "seed-1/emb_trained.arrow", "seed-1/emb_untrained.arrow", "assess/metrics.json"]) {
        expect(fs.existsSync(path.join(straight, arm, f)), `${arm}/${f}`).toBe(true);
      }
    }
    // one tokenization per encoding
    expect(fs.readdirSync(path.join(straight, "tokens")).sort()).toEqual(["counts", "rank"]);
    // the same budget in tokens: each arm stops at its first step reaching 2,500 real tokens
    // (encodings differ in tokens per cell, so the arms' totals differ by less than one step: 16 cells × 32)
    const last = (arm: string) => metricsRows(straight, arm).filter((x) => x.loss !== undefined).pop()!;
    for (const arm of ["rank-mlm", "counts-denoise"]) {
      expect(last(arm).tokens).toBeGreaterThanOrEqual(2500);
      expect(last(arm).tokens).toBeLessThan(2500 + 16 * 32);
    }
    const cj = JSON.parse(fs.readFileSync(path.join(straight, "compare.json"), "utf8"));
    expect(cj.rows.map((x: { name: string }) => x.name)).toEqual([
      "rank-mlm",
      "rank-mlm (untrained)",
      "rank-mlm input (genes as a bag → PCA)",
      "counts-denoise",
      "counts-denoise (untrained)",
      "counts-denoise input (genes as a bag → PCA)",
    ]);
    // the linear probe scores the held-out (validation) cells, next to HVG + PCA's
    expect(cj.baseline.values.probe_acc.mean).toBeGreaterThan(0.5);
    for (const r of cj.rows) expect(r.values.probe_acc.mean).toBeGreaterThanOrEqual(0);
    const am = JSON.parse(fs.readFileSync(path.join(straight, "rank-mlm", "assess", "metrics.json"), "utf8"));
    expect(am.probe.how).toMatch(/held-out cells/);
    // the input ceiling of the rank arm: its 32 top genes as a bag, separates types in this data
    expect(cj.rows[2].values.knn.mean).toBeGreaterThan(0.4);
    expect(cj.baseline.name).toMatch(/HVG/);
    expect(cj.baseline.values.knn.mean).toBeGreaterThan(0.5);
    expect(cj.reading.join("\n")).toMatch(/1\. Does every encoding keep within < between\?/);
    // the denoising benchmark's baselines on the held-out cells: the input scores 0, 70 % of counts removed
    expect(cj.denoise.nCells).toBe(60);
    expect(cj.denoise.downsampled.improvement).toBe(0);
    expect(cj.denoise.removedFraction).toBeGreaterThan(0.65);
    expect(cj.denoise.removedFraction).toBeLessThan(0.75);
    expect(Number.isFinite(cj.denoise.knn.improvement)).toBe(true);
    // the count-predicting arm is scored (trained and untrained) in its done.json and compare.json; the rank-MLM arm is not
    const done = JSON.parse(fs.readFileSync(path.join(straight, "counts-denoise", "seed-1", "done.json"), "utf8"));
    expect(done.denoise.trained.nEntries).toBe(done.denoise.untrained.nEntries);
    expect(Number.isFinite(done.denoise.trained.improvement)).toBe(true);
    expect(done.denoise.untrained.improvement).toBeLessThanOrEqual(0); // the untrained floor cannot restore counts
    expect(JSON.parse(fs.readFileSync(path.join(straight, "rank-mlm", "seed-1", "done.json"), "utf8")).denoise).toBeUndefined();
    const cden = cj.arms.find((a: { name: string }) => a.name === "counts-denoise").denoise;
    expect(cden.trained.mean).toBe(done.denoise.trained.improvement);
    expect(cj.reading.join("\n")).toMatch(/counts-denoise .*untrained/);
    // question 3 says which genes the value arm read (random expressed genes here: no top_genes)
    expect(cj.reading.join("\n")).toMatch(/3\. .*counts-denoise \[random expressed genes, 32 per cell\] vs rank-mlm: /);
    const md = fs.readFileSync(path.join(straight, "report.md"), "utf8");
    expect(md).toMatch(/\| HVG \+ PCA\d+ \| \*\*/); // the best kNN accuracy is marked
    expect(lines.some((l) => /\[arm 2\/2 counts-denoise · seed 1\] step \d+\/\d+ .*whole comparison ETA/.test(l))).toBe(true);
  });

  it("re-running skips finished arms; an interrupted run resumed gives the same final metrics", async () => {
    const again: string[] = [];
    const before = fs.statSync(path.join(straight, "rank-mlm", "seed-1", "emb_trained.arrow")).mtimeMs;
    await runCompare({ config: parseCompareConfig(raw(), "test.yaml"), output: straight, log: (l) => again.push(l) });
    expect(again.some((l) => /2 finished, 0 to run/.test(l))).toBe(true);
    expect(again.some((l) => /training|assessing/.test(l))).toBe(false);
    expect(fs.statSync(path.join(straight, "rank-mlm", "seed-1", "emb_trained.arrow")).mtimeMs).toBe(before);

    const halves = path.join(tmp, "halves");
    const first = await runCompare({ config: parseCompareConfig(raw(), "test.yaml"), output: halves, stopAfterSteps: 3, quiet: true });
    expect(first.interrupted).toBe(true);
    expect(fs.existsSync(path.join(halves, "rank-mlm", "seed-1", "done.json"))).toBe(false);
    const second = await runCompare({ config: parseCompareConfig(raw(), "test.yaml"), output: halves, quiet: true });
    expect(second.interrupted).toBe(false);
    for (const arm of ["rank-mlm", "counts-denoise"]) {
      const a = metricsRows(straight, arm).map(({ step, tokens, loss, val_loss }) => ({ step, tokens, loss, val_loss }));
      const b = metricsRows(halves, arm).map(({ step, tokens, loss, val_loss }) => ({ step, tokens, loss, val_loss }));
      expect(b).toEqual(a);
    }
    const ra = JSON.parse(fs.readFileSync(path.join(straight, "compare.json"), "utf8")).rows;
    const rb = JSON.parse(fs.readFileSync(path.join(halves, "compare.json"), "utf8")).rows;
    expect(rb).toEqual(ra);
  });

  it("reports config errors naming the arm and the key before anything trains", async () => {
    const arms = (raw().arms as Record<string, unknown>[]).slice();
    expect(() => parseCompareConfig(raw({ arms: [arms[0], { ...arms[1], name: "rank-mlm" }] }), "c.yaml")).toThrow(
      /c\.yaml: arm "rank-mlm": name: two arms are called "rank-mlm"/,
    );
    expect(() => parseCompareConfig(raw({ arms: [arms[0], { name: "rank-zinb", encoding: "rank", objective: "zinb-nope" }] }), "c.yaml")).toThrow(
      /c\.yaml: arm "rank-zinb": objective: encoding "rank" × objective "zinb-nope" is not a supported pair \(supported: rank × mlm, binned × mlm, counts × mlm, rank × denoise/,
    );
    expect(() => parseCompareConfig(raw({ arms: [{ name: "x", encoding: "spline", objective: "mlm" }] }), "c.yaml")).toThrow(/arm "x": encoding: encoding "spline" × objective "mlm" is not a supported pair/);
    expect(() => parseCompareConfig(raw({ training: { ...(raw().training as object), init_output_bias: "unigram" } }), "c.yaml")).toThrow(
      /c\.yaml: arm "counts-denoise": training\.init_output_bias: unigram is for objective mlm/,
    );
    expect(() => parseCompareConfig(raw({ arms: [{ ...arms[0], training: { lr: "fast" } }] }), "c.yaml")).toThrow(/c\.yaml: arm "rank-mlm": training\.lr: expected a positive number, got "fast"/);
    expect(() => parseCompareConfig(raw({ training: { max_steps: 3 } }), "c.yaml")).toThrow(/training\.max_steps: not allowed in a comparison/);
    expect(() => parseCompareConfig(raw(), "c.yaml", { arms: ["nope"] })).toThrow(/--arms: no arm called "nope"/);
    // a decoder conditioned on the batch reads the comparison's batch column, the only other one its tokens carry
    const bkArm = { name: "rank-bn-batch", encoding: "rank", objective: "mlm", training: { objectives: { bottleneck: 1 }, bottleneck: { genes: 200, batch_key: "batch" } } };
    expect(() => parseCompareConfig(raw({ arms: [bkArm] }), "c.yaml")).toThrow(
      'c.yaml: arm "rank-bn-batch": training.bottleneck.batch_key: "batch" is not the comparison\'s batch column (no data.batch or --batch given); the tokens carry only data.label and data.batch',
    );
    expect(parseCompareConfig(raw({ arms: [bkArm] }), "c.yaml", { batch: "batch" }).arms[0].name).toBe("rank-bn-batch");
    // arms share a tokenization exactly when encoding and tokenizer options agree
    const shared = parseCompareConfig(
      raw({
        arms: [
          arms[0],
          { name: "rank-denoise", encoding: "rank", objective: "denoise" },
          { name: "binned-mlm", encoding: "binned", objective: "mlm" },
          { name: "binned-21", encoding: "binned", objective: "mlm", tokenize: { n_bins: 21 } },
          { name: "counts-top", encoding: "counts", objective: "denoise", tokenize: { top_genes: 32 } },
          { name: "binned-top", encoding: "binned", objective: "mlm", tokenize: { top_genes: 32 } },
        ],
      }),
      "c.yaml",
    );
    expect(shared.arms.map(tokensKey)).toEqual(["rank", "rank", "binned-b51-s0", "binned-b21-s0", "counts-top32", "binned-b51-s0-top32"]);
    expect(shared.arms.map((a) => a.predictsCounts)).toEqual([false, true, false, false, true, false]);
    expect(() => parseCompareConfig(raw({ arms: [{ ...arms[0], tokenize: { top_genes: 32 } }] }), "c.yaml")).toThrow(
      /c\.yaml: arm "rank-mlm": tokenize\.top_genes: is for the binned and counts encodings/,
    );
    expect(() => parseCompareConfig(raw({ arms: [{ ...arms[1], tokenize: { top_genes: -3 } }] }), "c.yaml")).toThrow(/arms\[0\] \("counts-denoise"\): tokenize\.top_genes: expected a positive integer, got -3/);

    // budget smaller than one batch: found after tokenizing, before any training
    const small = path.join(tmp, "small");
    const cfg = parseCompareConfig(raw({ training: { ...(raw().training as object), max_tokens: 20 } }), "c.yaml");
    await expect(runCompare({ config: cfg, output: small, quiet: true })).rejects.toThrow(/c\.yaml: arm "rank-mlm": training\.max_tokens: 20 is smaller than one optimizer step/);
    expect(fs.existsSync(path.join(small, "rank-mlm", "seed-1", "train"))).toBe(false);

    // a data file without the label column: before anything is written
    const nolabel = path.join(tmp, "nolabel");
    const cfg2 = parseCompareConfig(raw({ data: { ...(raw().data as object), label: "celltype_typo" } }), "c.yaml");
    await expect(runCompare({ config: cfg2, output: nolabel, quiet: true })).rejects.toThrow(/c\.yaml: data\.label: column "celltype_typo" is not in .*tiny\.h5ad \(obs columns: /);
    expect(fs.existsSync(nolabel)).toBe(false);
  });

  it("cell-objective arms: a rank bottleneck arm with max pooling, and a binned top-genes arm whose bottleneck decodes the rank tokens' counts", async () => {
    const out = path.join(tmp, "cell");
    const arms = [
      { name: "rank-bn-max", encoding: "rank", objective: "mlm", model: { pooling: "max" }, training: { objectives: { bottleneck: 1 }, bottleneck: { genes: 100 } } },
      { name: "binned-bn", encoding: "binned", objective: "mlm", tokenize: { top_genes: 32 }, model: { pooling: "max" }, training: { objectives: { mlm: 1, bottleneck: 1 }, bottleneck: { genes: 100 } } },
    ];
    const r = await runCompare({ config: parseCompareConfig(raw({ arms }), "test.yaml"), output: out, quiet: true });
    expect(r.rows!.filter((x) => x.kind === "trained").map((x) => x.name)).toEqual(["rank-bn-max", "binned-bn"]);
    // the binned arm's bottleneck targets came from the rank tokens of the same cells
    expect(fs.readdirSync(path.join(out, "tokens")).sort()).toEqual(["binned-b51-s0-top32", "rank"]);
    const ev = JSON.parse(fs.readFileSync(path.join(out, "binned-bn", "seed-1", "train", "eval.json"), "utf8"));
    expect(Object.keys(ev.terms)).toEqual(["mlm", "bottleneck"]);
    const ck = JSON.parse(fs.readFileSync(path.join(out, "rank-bn-max", "seed-1", "train", "final", "config.json"), "utf8"));
    expect(ck.cellfm.cell.pooling).toBe("max");
    // the untrained floor is the same architecture (with its cell heads), embedded the same way
    expect(JSON.parse(fs.readFileSync(path.join(out, "rank-bn-max", "seed-1", "untrained", "config.json"), "utf8")).cellfm.cell.pooling).toBe("max");
  });

  it("--arms runs a subset", async () => {
    const sub = path.join(tmp, "subset");
    const r = await runCompare({ config: parseCompareConfig(raw(), "test.yaml", { arms: ["counts-denoise"] }), output: sub, quiet: true });
    expect(r.rows!.map((x) => x.name)).toEqual(["counts-denoise", "counts-denoise (untrained)", "counts-denoise input (genes as a bag → PCA)"]);
    expect(fs.existsSync(path.join(sub, "rank-mlm"))).toBe(false);
  });
});
