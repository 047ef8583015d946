/**
 * Fault injection, concurrent and replaced runs (issue 20 §1): a second writer of an output is
 * refused naming the holder, a dead holder's lock is taken over, `--force` keeps the previous run
 * until the new one has a checkpoint and never deletes files cellfm did not write; a comparison
 * resumed after kill -9 counts the training time of both parts. Tiny BERT on the
 * 300 real PBMC cells of data/tiny.h5ad (golden Geneformer V1 tokens).
 */
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { lockOutput, lockPathOf, releaseOutputLocks } from "../../src/lock.js";
import { TINY_MODEL, writeGoldenTokens } from "../train/helpers.js";
import { cli, expectRefused, expectUnchanged, snapshot, spawnCli, tmpDir } from "./helpers.js";

let root: string;
let tokens: string;
const DEAD_PID = 2 ** 22 + 12345; // above Linux's pid_max default: never a live process

beforeAll(() => {
  root = tmpDir("runs");
  tokens = path.join(root, "tokens");
  writeGoldenTokens(tokens);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function trainYaml(name: string, training: Record<string, unknown>, out = path.join(root, name)): string {
  const f = path.join(root, `${name}-${Object.values(training).join("-")}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: TINY_MODEL,
      data: { tokens, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 0, log_every: 1, eval_cells: 16, seed: 7, ...training },
      output: { dir: out },
      backend: "wasm",
    }),
  );
  return f;
}
const seedOf = (run: string) => JSON.parse(fs.readFileSync(path.join(run, "run.json"), "utf8")).config.training.seed;

describe("two writers of one output", () => {
  it("a second train onto a running run's folder is refused naming the holder, with or without --force; nothing is mixed", async () => {
    const run = path.join(root, "busy");
    const a = trainYaml("busy", { max_steps: 400, seed: 7 });
    const b = trainYaml("busy", { max_steps: 20, seed: 99 });
    let child: ChildProcess | undefined;
    const first = spawnCli(["train", "--config", a], { onChild: (c) => (child = c) });
    // wait until A is training (its lock taken), then try B while A runs
    for (let i = 0; i < 600 && !fs.existsSync(path.join(run, "metrics.jsonl")); i++) await new Promise((r) => setTimeout(r, 100));
    const guard = snapshot(tokens);
    const refused = [
      await expectRefused(["train", "--config", b, "--quiet"], [`output ${run} is being written by cellfm train (pid`, os.hostname()]),
      await expectRefused(["train", "--config", b, "--quiet", "--force"], ["is being written by cellfm train"]),
      await expectRefused(["train", "--config", b, "--quiet", "--resume"], ["is being written by cellfm train"]),
    ];
    expect(refused.every((m) => !m.includes("leftovers"))).toBe(true);
    child!.kill("SIGTERM");
    const r = await first;
    expect(r.code).toBe(143); // A stopped on SIGTERM with a checkpoint (128 + 15)
    expectUnchanged(guard);
    expect(seedOf(run)).toBe(7);
    const steps = fs.readFileSync(path.join(run, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step as number);
    expect(steps).toEqual([...steps].sort((x, y) => x - y)); // one run's rows, in order
    expect(fs.existsSync(lockPathOf(run))).toBe(false); // released on exit
  });

  it("a stale lock (dead pid on this host) is taken over; a lock from another host is refused naming the file to remove", async () => {
    const out = path.join(root, "tok-stale-lock");
    const lock = lockPathOf(out);
    fs.writeFileSync(lock, JSON.stringify({ pid: DEAD_PID, host: os.hostname(), command: "tokenize", started: "2026-01-01T00:00:00Z" }));
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", out, "-q"])).code).toBe(0);
    expect(fs.existsSync(lock)).toBe(false);
    const other = path.join(root, "tok-other-host");
    fs.writeFileSync(lockPathOf(other), JSON.stringify({ pid: process.pid, host: "node-17.cluster", command: "tokenize", started: "2026-01-01T00:00:00Z" }));
    await expectRefused(["tokenize", "-i", "data/tiny.h5ad", "-o", other, "-q"], [`output ${other} is locked by cellfm tokenize (pid ${process.pid} on node-17.cluster`, `remove ${lockPathOf(other)}`], [root]);
    expect(fs.existsSync(other)).toBe(false);
  });

  it("a live holder of this process is re-entrant; a live holder of another pid refuses embed and merge too", () => {
    const out = path.join(root, "emb-locked.arrow");
    // pid 1 (init) is alive and is not this process
    fs.writeFileSync(lockPathOf(out), JSON.stringify({ pid: 1, host: os.hostname(), command: "embed", started: "2026-01-01T00:00:00Z" }));
    expect(() => lockOutput(out, "embed")).toThrow(`output ${out} is being written by cellfm embed (pid 1 on ${os.hostname()}`);
    fs.rmSync(lockPathOf(out));
    lockOutput(out, "embed");
    lockOutput(out, "embed");
    releaseOutputLocks();
    expect(fs.existsSync(lockPathOf(out))).toBe(false);
  });
});

describe("--force replaces a run only once the new one exists", () => {
  it("train --force whose new run diverges before a checkpoint keeps the previous complete run", async () => {
    const run = path.join(root, "keep");
    expect((await cli(["train", "--config", trainYaml("keep", { max_steps: 2 }), "--quiet"])).code).toBe(0);
    const before = snapshot(run);
    const r = await cli(["train", "--config", trainYaml("keep", { max_steps: 5, lr: 1e38 }), "--quiet", "--force"]);
    expect(r.code).toBe(1);
    expect(r.message).toMatch(/^training diverged: .* at step 2; .*No checkpoint was saved/);
    expectUnchanged(before);
    expect(fs.readdirSync(root).filter((n) => n.startsWith("keep.old-") || n.startsWith("keep.tmp-"))).toEqual([]);
  });

  it("train --force with a new checkpoint replaces the previous run", async () => {
    const run = path.join(root, "repl");
    expect((await cli(["train", "--config", trainYaml("repl", { max_steps: 2, seed: 7 }), "--quiet"])).code).toBe(0);
    expect((await cli(["train", "--config", trainYaml("repl", { max_steps: 2, seed: 99 }), "--quiet", "--force"])).code).toBe(0);
    expect(seedOf(run)).toBe(99);
    expect(fs.existsSync(path.join(run, "final", "model.safetensors"))).toBe(true);
    expect(fs.readdirSync(root).filter((n) => n.startsWith("repl.old-"))).toEqual([]);
  });

  it("a --force run killed before its first checkpoint: the next command puts the previous run back", async () => {
    const run = path.join(root, "k9f");
    const f = trainYaml("k9f", { max_steps: 2 });
    expect((await cli(["train", "--config", f, "--quiet"])).code).toBe(0);
    const before = snapshot(run);
    // what kill -9 leaves: the previous run set aside by a dead process, the new run's start files in place
    const aside = `${run}.old-${DEAD_PID}-1`;
    fs.renameSync(run, aside);
    fs.mkdirSync(run);
    fs.writeFileSync(path.join(run, "run.json"), "{}\n");
    fs.writeFileSync(path.join(run, "metrics.jsonl"), '{"step":0,"val_loss":7}\n{"step":1,"lo');
    await expectRefused(["train", "--config", f, "--quiet"], [`output folder ${run} already exists`]);
    expectUnchanged(before);
    expect(fs.existsSync(aside)).toBe(false);
  });
});

describe("--force never deletes files cellfm did not write", () => {
  it("refuses, naming them: a note in a tokenized dataset, a notebook in a run, a file inside a checkpoint", async () => {
    const tok = path.join(root, "tok-notes");
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", tok, "-q"])).code).toBe(0);
    fs.writeFileSync(path.join(tok, "my_notes.md"), "# notes\n");
    await expectRefused(["tokenize", "-i", "data/tiny.h5ad", "-o", tok, "-q", "--force"], [tok, "files cellfm did not write", "my_notes.md"], [tok]);

    const run = path.join(root, "nb");
    const f = trainYaml("nb", { max_steps: 1 });
    expect((await cli(["train", "--config", f, "--quiet"])).code).toBe(0);
    fs.writeFileSync(path.join(run, "analysis.ipynb"), "{}");
    await expectRefused(["train", "--config", f, "--quiet", "--force"], [run, "analysis.ipynb"], [run]);
    fs.rmSync(path.join(run, "analysis.ipynb"));
    fs.writeFileSync(path.join(run, "final", "README.txt"), "mine");
    await expectRefused(["train", "--config", f, "--quiet", "--force"], ["final/README.txt"], [run]);
    fs.rmSync(path.join(run, "final", "README.txt"));
    // only cellfm's files: replaced
    expect((await cli(["train", "--config", f, "--quiet", "--force"])).code).toBe(0);
  });
});

describe("a comparison resumed after kill -9", () => {
  it("reports the training time of the whole run (both parts), not of the resumed part only", async () => {
    const cfgFile = path.join(root, "cmp.yaml");
    fs.writeFileSync(
      cfgFile,
      stringify({
        data: { input: path.resolve("data/tiny.h5ad"), label: "cell_type", max_length: 32, val_fraction: 0.2 },
        seeds: [1],
        model: { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32 },
        training: { max_tokens: 40000, batch_size: 16, lr: 3.0e-3, warmup_steps: 1, log_every: 1, eval_cells: 32, save_every: 5 },
        assess: { min_cells: 40, per_type: 40, n_hvg: 200, threads: 1, umap_epochs: 20 },
        denoise: { n_hvg: 200, n_pcs: 10 },
        arms: [{ name: "rank-mlm", encoding: "rank", objective: "mlm" }],
        backend: "wasm",
      }),
    );
    const out = path.join(root, "cmp");
    const timing = path.join(out, "rank-mlm", "seed-1", "timing.json");
    let child: ChildProcess | undefined;
    const first = spawnCli(["compare", "--config", cfgFile, "--output", out, "--quiet"], { onChild: (c) => (child = c) });
    // kill -9 once the run has trained for a while (timing.json is saved as training goes)
    for (let i = 0; i < 1200 && !(fs.existsSync(timing) && JSON.parse(fs.readFileSync(timing, "utf8")).train_s >= 2); i++) await new Promise((r) => setTimeout(r, 50));
    child!.kill("SIGKILL");
    expect((await first).signal).toBe("SIGKILL");
    const killedPart = JSON.parse(fs.readFileSync(timing, "utf8")).train_s as number;
    expect(killedPart).toBeGreaterThanOrEqual(2);
    expect((await cli(["compare", "--config", cfgFile, "--output", out, "--quiet"])).code).toBe(0);
    const done = JSON.parse(fs.readFileSync(path.join(out, "rank-mlm", "seed-1", "done.json"), "utf8"));
    expect(done.train_attempts).toBe(2);
    expect(done.train_seconds).toBeGreaterThan(killedPart);
    expect(done.tokens_per_s).toBeCloseTo(done.tokens / done.train_seconds, 6);
  });
});
