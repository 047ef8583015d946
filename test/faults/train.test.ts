/**
 * Fault injection, training (issue 8 §2-§4): worker counts, non-finite weights and losses, a run
 * that fails before its first checkpoint, and SIGTERM/SIGHUP with exact resume. Tiny BERT on the
 * 300 real PBMC cells of data/tiny.h5ad (golden Geneformer V1 tokens).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { readSafetensors } from "../../src/model/safetensors.js";
import { checkThreadCount } from "../../src/threads.js";
import { train } from "../../src/train/loop.js";
import { DataParallel } from "../../src/train/parallel.js";
import { TINY_MODEL, tinyTrainConfig, writeGoldenTokens } from "../train/helpers.js";
import { cli, expectRefused, expectUnchanged, snapshot, spawnCli, tmpDir } from "./helpers.js";

let root: string;
let tokens: string;
beforeAll(() => {
  root = tmpDir("train");
  tokens = path.join(root, "tokens");
  writeGoldenTokens(tokens);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A training config YAML for the CLI (the tiny model), returns its path. */
function yamlConfig(name: string, training: Record<string, unknown>, out = name): string {
  const f = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: TINY_MODEL,
      data: { tokens, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 0, log_every: 1, eval_cells: 16, seed: 7, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    }),
  );
  return f;
}
const cfg = (out: string, training: Record<string, unknown>) => tinyTrainConfig(tokens, root, out, { eval_cells: 16, ...training });

describe("worker and thread counts", () => {
  it("more workers/threads than cores is an error naming the flag and the cores, before anything is written", async () => {
    const out = path.join(root, "w1000");
    const guard = [tokens];
    await expectRefused(["train", "--config", yamlConfig("w1000", { max_steps: 1 }), "--workers", "1000"], ["--workers 1000", "CPU core"], guard);
    expect(fs.existsSync(out)).toBe(false);
    await expectRefused(["train", "--config", yamlConfig("w1000b", { max_steps: 1, workers: 1000 })], ["training.workers 1000", "CPU core"], guard);
    await expectRefused(
      ["embed", "-c", path.join(root, "none"), "-i", tokens, "-o", path.join(root, "e.arrow"), "--workers", "1000"],
      ["--workers 1000", "CPU core"],
      guard,
    );
    await expectRefused(["assess", "--input", "data/tiny.h5ad", "--output", path.join(root, "as"), "--threads", "1000"], ["--workers 1000", "CPU core"]);
    expect(fs.existsSync(path.join(root, "as"))).toBe(false);
    expect(() => checkThreadCount(2.5, "--threads")).toThrow("--threads must be an integer >= 1, got 2.5");
  });

  it("trains with workers: 3 (once crashed in syncWeights) when the cores allow it (CELLFM_MAX_THREADS)", async () => {
    process.env.CELLFM_MAX_THREADS = "4";
    try {
      const r = await train(cfg("w3", { max_steps: 2, workers: 3 }), { quiet: true });
      expect(r.step).toBe(2);
      expect(r.losses.every(Number.isFinite)).toBe(true);
    } finally {
      delete process.env.CELLFM_MAX_THREADS;
    }
    expect(DataParallel.live).toBe(0);
  });
});

describe("non-finite numbers", () => {
  it("a checkpoint with a NaN weight (same file size) is an error naming the file and the tensor", async () => {
    const r = await train(cfg("nanw", { max_steps: 1 }), { quiet: true });
    const file = path.join(r.checkpoint, "model.safetensors");
    const size = fs.statSync(file).size;
    const st = readSafetensors(file);
    const name = "bert.encoder.layer.0.attention.self.query.weight";
    expect(st.tensors[name]).toBeDefined();
    // flip one float to NaN in place: find the tensor's bytes via the header
    const buf = fs.readFileSync(file);
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString("utf8"));
    buf.writeFloatLE(NaN, 8 + hlen + header[name].data_offsets[0] + 4 * 5);
    fs.writeFileSync(file, buf);
    expect(fs.statSync(file).size).toBe(size);
    const out = path.join(root, "nanw.arrow");
    await expectRefused(["embed", "-c", r.checkpoint, "-i", tokens, "-o", out, "-q"], [file, `tensor ${name}`, "non-finite", "NaN at index 5"], [root]);
    expect(fs.existsSync(out)).toBe(false);
    // resuming from it is refused the same way
    await expect(train(cfg("nanw", { max_steps: 2 }), { quiet: true, resume: true })).rejects.toThrow(`tensor ${name}`);
  });

  it("a non-finite loss stops training naming the step and keeping the last good checkpoint", async () => {
    // lr 1e36: step 1 is finite (weights ~1e36), step 2 overflows
    const c = cfg("diverge", { max_steps: 5, save_every: 1, lr: 1e36, warmup_steps: 0, max_grad_norm: 1 });
    await train(c, { quiet: true, stopAfter: 1 });
    const ck = path.join(c.output.dir, "checkpoint-1");
    expect(fs.existsSync(ck)).toBe(true);
    const before = snapshot(ck);
    const err: string = await train(c, { quiet: true, resume: true }).then(
      () => "no error",
      (e: Error) => e.message,
    );
    expect(err).toMatch(/^training diverged: (loss|gradient norm|weight \S+) (NaN|Infinity|-Infinity|non-finite after the update) at step 2; /);
    expect(err).toContain(`last good checkpoint is ${ck}`);
    expectUnchanged(before);
    expect(fs.readdirSync(c.output.dir).filter((n) => n.startsWith("checkpoint-"))).toEqual(["checkpoint-1"]);
  });

  it("a run that fails before its first checkpoint does not block the same command", async () => {
    const f = yamlConfig("early", { max_steps: 4, lr: 1e38 });
    const a = await cli(["train", "--config", f, "--quiet"]);
    expect(a.code).toBe(1);
    expect(a.message).toMatch(/training diverged: .* at step 2; .*No checkpoint was saved before it/);
    expect(fs.readdirSync(path.join(root, "early")).sort()).toEqual([".cellfm.json", "metrics.jsonl", "run.json"]);
    const b = await cli(["train", "--config", f, "--quiet"]); // same command: fails the same way, not "already exists"
    expect(b.message).toBe(a.message);
    // and a fixed config then runs in the same folder without --force
    const ok = await cli(["train", "--config", yamlConfig("early", { max_steps: 1 }), "--quiet"]);
    expect(ok.code).toBe(0);
    expect(fs.existsSync(path.join(root, "early", "final", "model.safetensors"))).toBe(true);
  });
});

describe("SIGTERM and SIGHUP", () => {
  for (const [sig, workers] of [["SIGTERM", 2], ["SIGHUP", 1]] as const) {
    it(`${sig} (workers: ${workers}) saves a checkpoint; --resume continues bit for bit`, async () => {
      const straight = await train(cfg(`${sig}-s`, { max_steps: 6, workers }), { quiet: true });
      const c = cfg(`${sig}-r`, { max_steps: 6, workers });
      const others = process.listeners(sig);
      process.removeAllListeners(sig);
      try {
        const first = await train(c, { quiet: true, onStep: (m) => void (m.step === 3 && process.emit(sig, sig)) });
        expect(first.interrupted).toBe(true);
        expect(first.signal).toBe(sig);
        expect(first.step).toBe(3);
        expect(process.listeners(sig)).toHaveLength(0);
      } finally {
        for (const l of others) process.on(sig, l as () => void);
      }
      const second = await train(c, { quiet: true, resume: true });
      expect(second.losses).toEqual(straight.losses.slice(3));
      expect(second.eval!.model_loss).toBe(straight.eval!.model_loss);
    });
  }

  it("a real SIGTERM to `cellfm train` exits 143 with a resumable checkpoint", async () => {
    const f = yamlConfig("term", { max_steps: 200 });
    const r = await spawnCli(["train", "--config", f], { signal: "SIGTERM", when: /step 2\/200/ });
    expect(r.stderr).toContain("SIGTERM received");
    expect(r.code).toBe(143);
    const cks = fs.readdirSync(path.join(root, "term")).filter((n) => /^checkpoint-\d+$/.test(n));
    expect(cks).toHaveLength(1);
    expect(r.stdout).toContain("continue with: cellfm train --config");
  });
});
