/**
 * End-to-end training on real data: the 300 real PBMC cells of data/tiny.h5ad, tokenized with the
 * Geneformer V1 dictionary (the expected tokens in test/fixtures/golden/tiny.v1.jsonl), a tiny BERT.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TrainConfig } from "../../src/train/config.js";
import { stepsForTokenBudget, train, type EvalResult } from "../../src/train/loop.js";
import { tinyTrainConfig, writeGoldenTokens } from "./helpers.js";

let tmp: string;
let tokens: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-train-"));
  tokens = path.join(tmp, "tokens");
  writeGoldenTokens(tokens);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cfg(out: string, training: Record<string, unknown>, model: Record<string, unknown> = {}): TrainConfig {
  return tinyTrainConfig(tokens, tmp, out, { ...training }, model);
}

describe("cellfm train (loop)", () => {
  it("lowers the held-out masked-token loss on real cells and writes checkpoint, metrics and eval.json", async () => {
    const c = cfg("learn", { max_steps: 30, lr: 5e-3, eval_every: 15 });
    const r = await train(c, { quiet: true });
    expect(r.interrupted).toBe(false);
    const ev = JSON.parse(fs.readFileSync(path.join(c.output.dir, "eval.json"), "utf8")) as EvalResult;
    expect(ev.initial_loss).toBeGreaterThan(9.5); // ≈ ln(25,426) = 10.14 before training
    expect(ev.model_loss).toBeLessThan(ev.initial_loss! - 1.0);
    expect(ev.unigram_loss).toBeGreaterThan(0);
    expect(ev.n_masked).toBeGreaterThan(100);
    expect(r.checkpoint).toBe(path.join(c.output.dir, "final"));
    for (const f of ["config.json", "model.safetensors", "optimizer.safetensors", "cellfm_state.json"]) {
      expect(fs.existsSync(path.join(r.checkpoint, f))).toBe(true);
    }
    const rows = fs.readFileSync(path.join(c.output.dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const stepRows = rows.filter((x) => x.loss !== undefined);
    expect(stepRows.length).toBe(16); // every 2nd step + the evaluation at step 15
    for (const k of ["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"]) expect(stepRows[0]).toHaveProperty(k);
    expect(rows.some((x) => x.step === 15 && x.val_loss !== undefined)).toBe(true);
    const run = JSON.parse(fs.readFileSync(path.join(c.output.dir, "run.json"), "utf8"));
    expect(run.backend).toBe("wasm");
    expect(run.mfu_peak_flops).toBeGreaterThan(0);
    const cj = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8"));
    expect(cj.cellfm.backend).toBe("wasm");
    expect(cj.vocab_size).toBe(25426);
    // refuses to overwrite without --force
    await expect(train(c, { quiet: true })).rejects.toThrow(/already exists and is not empty.*--force/);
  });

  it("resumes exactly: N steps straight == N/2 + resume + N/2, same seed gives the same losses", async () => {
    const straight = await train(cfg("straight", { max_steps: 8, lr: 3e-3, save_every: 4 }), { quiet: true });
    const c = cfg("halves", { max_steps: 8, lr: 3e-3, save_every: 4 });
    const first = await train(c, { quiet: true, stopAfter: 4 });
    expect(first.interrupted).toBe(true);
    expect(first.checkpoint).toBe(path.join(c.output.dir, "checkpoint-4"));
    expect(first.losses).toEqual(straight.losses.slice(0, 4)); // same seed, same backend -> identical
    const second = await train(c, { quiet: true, resume: true });
    expect(second.step).toBe(8);
    expect(second.losses).toEqual(straight.losses.slice(4));
    expect(second.eval!.model_loss).toBe(straight.eval!.model_loss);
    expect(second.eval!.initial_loss).toBe(straight.eval!.initial_loss);

    // a different architecture is refused, naming the field
    const other = cfg("halves", { max_steps: 8, lr: 3e-3 }, { hidden_size: 48 });
    await expect(train(other, { quiet: true, resume: true })).rejects.toThrow(/architecture differs[\s\S]*model.hidden_size: 48 \(config\) vs 32/);

    // a half-written / damaged checkpoint gives a clear error
    fs.rmSync(path.join(c.output.dir, "final", "model.safetensors"));
    await expect(train(c, { quiet: true, resume: true })).rejects.toThrow(/model.safetensors: missing/);
    fs.rmSync(path.join(c.output.dir, "final"), { recursive: true });
    fs.rmSync(path.join(c.output.dir, "checkpoint-4", "cellfm_state.json"));
    await expect(train(c, { quiet: true, resume: true })).rejects.toThrow(/checkpoint-4 has no cellfm_state.json/);
    // nothing to resume
    await expect(train(cfg("empty", { max_steps: 2 }), { quiet: true, resume: true })).rejects.toThrow(/--resume: no checkpoint in .*empty/);
  });

  it("init_output_bias: unigram starts the model at the unigram baseline", async () => {
    const r = await train(cfg("bias", { max_steps: 1, init_output_bias: "unigram" }), { quiet: true });
    expect(Math.abs(r.eval!.initial_loss! - r.eval!.unigram_loss)).toBeLessThan(0.05);
  });

  it("Ctrl-C (SIGINT) finishes the step, saves a resumable checkpoint and returns", async () => {
    const others = process.listeners("SIGINT");
    process.removeAllListeners("SIGINT");
    try {
      const c = cfg("sigint", { max_steps: 50 });
      const r = await train(c, {
        quiet: true,
        onStep: (m) => {
          if (m.step === 2) process.emit("SIGINT");
        },
      });
      expect(r.interrupted).toBe(true);
      expect(r.step).toBe(2);
      expect(r.checkpoint).toBe(path.join(c.output.dir, "checkpoint-2"));
      const st = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "cellfm_state.json"), "utf8"));
      expect(st.step).toBe(2);
      expect(st.data_position).toEqual({ epoch: 0, batch: 2 });
      expect(process.listeners("SIGINT")).toHaveLength(0); // handler removed again
    } finally {
      for (const l of others) process.on("SIGINT", l as () => void);
    }
  });

  it("training.max_tokens: stops at the first step whose cumulative real tokens reach the budget, logs tokens seen", async () => {
    const c = cfg("budget", { max_tokens: 2500, log_every: 1 });
    // 10 cells of 5 tokens, 2 cells a step: 10 tokens per step, a budget of 25 needs 3 steps (30 tokens)
    const plan = stepsForTokenBudget(new Int32Array(10).fill(5), { batch_size: 2, seed: 1, grad_accumulation: 1 }, 25);
    expect(plan).toEqual({ steps: 3, tokens: 30, firstStepTokens: 10 });
    const r = await train(c, { quiet: true });
    const rows = fs.readFileSync(path.join(c.output.dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const stepRows = rows.filter((x) => x.loss !== undefined);
    expect(stepRows.length).toBe(r.step);
    const last = stepRows[stepRows.length - 1];
    expect(last.tokens).toBeGreaterThanOrEqual(2500);
    expect(stepRows[stepRows.length - 2].tokens).toBeLessThan(2500);
    for (let i = 1; i < stepRows.length; i++) expect(stepRows[i].tokens).toBeGreaterThan(stepRows[i - 1].tokens);
    const tooSmall = cfg("budget-small", { max_tokens: 10 });
    await expect(train(tooSmall, { quiet: true })).rejects.toThrow(/test.yaml: training.max_tokens: 10 is smaller than one optimizer step/);
  });
});
