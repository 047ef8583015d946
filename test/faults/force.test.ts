/**
 * Fault injection, outputs (issue 8 §1): `--force` never deletes what the command did not write;
 * an output that is, contains or lies inside an input is refused; leftovers of killed writes are
 * cleaned by the next run of the same command. Real cells: data/tiny.h5ad (300 PBMC cells).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { OUTPUT_MARKER } from "../../src/io.js";
import { TINY_MODEL, writeGoldenTokens } from "../train/helpers.js";
import { cli, expectRefused, expectUnchanged, snapshot, tmpDir } from "./helpers.js";

let root: string;
let tokens: string;
let ckpt: string;
const DEAD_PID = 2 ** 22 + 12345; // above Linux's pid_max default: never a live process

beforeAll(async () => {
  root = tmpDir("force");
  tokens = path.join(root, "tokens");
  writeGoldenTokens(tokens);
  const f = trainYaml("run", { max_steps: 1 });
  const r = await cli(["train", "--config", f, "--quiet"]);
  expect(r.code).toBe(0);
  ckpt = path.join(root, "run", "final");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function trainYaml(name: string, training: Record<string, unknown>, out = path.join(root, name), data = tokens): string {
  const f = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: TINY_MODEL,
      data: { tokens: data, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, eval_cells: 16, seed: 7, ...training },
      output: { dir: out },
      backend: "wasm",
    }),
  );
  return f;
}

/** A user's folder with files cellfm did not write. */
function userFolder(name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, "notes.txt"), "my notes");
  fs.copyFileSync("data/tiny.h5ad", path.join(d, "my.h5ad"));
  return d;
}

describe("an output that is, contains or lies inside an input", () => {
  it("tokenize -i dir/my.h5ad -o dir --force is refused naming both (my.h5ad kept)", async () => {
    const d = userFolder("tok-in");
    await expectRefused(["tokenize", "-i", path.join(d, "my.h5ad"), "-o", d, "--force", "-q"], [`output ${d} contains the input ${path.join(d, "my.h5ad")} (--input)`], [d]);
    await expectRefused(["tokenize", "-i", d + "/my.h5ad", "-o", path.join(d, "my.h5ad"), "--force", "-q"], ["is the input"], [d]);
  });

  it("train with output.dir = data.tokens (or inside it) is refused with --force, the tokens kept", async () => {
    await expectRefused(["train", "--config", trainYaml("same", { max_steps: 1 }, tokens), "--force"], [`output.dir ${tokens} is the input ${tokens}`, "data.tokens"], [tokens]);
    await expectRefused(["train", "--config", trainYaml("inside", { max_steps: 1 }, path.join(tokens, "run")), "--force"], ["lies inside the input"], [tokens]);
    expect(fs.existsSync(path.join(tokens, "run"))).toBe(false);
  });

  it("embed --h5ad onto its own .h5ad input, or -o = --h5ad, is refused", async () => {
    const d = userFolder("emb-in");
    const h5 = path.join(d, "my.h5ad");
    await expectRefused(["embed", "-c", ckpt, "-i", h5, "-o", path.join(d, "e.arrow"), "--h5ad", h5, "--force", "-q"], [`output ${h5} is the input ${h5} (--input)`], [d]);
    const o = path.join(root, "same.arrow");
    await expectRefused(["embed", "-c", ckpt, "-i", tokens, "-o", o, "--h5ad", o, "-q"], ["is the input", "(--output)"], [tokens]);
    await expectRefused(["embed", "-c", ckpt, "-i", tokens, "-o", path.join(ckpt, "e.arrow"), "-q"], ["lies inside the input", "(--checkpoint)"], [ckpt]);
  });

  it("assess --output containing its --input is refused", async () => {
    const d = userFolder("as-in");
    await expectRefused(["assess", "--input", path.join(d, "my.h5ad"), "--output", d, "--force", "-q"], ["contains the input", "(--input)"], [d]);
  });
});

describe("--force replaces only what cellfm wrote", () => {
  it("tokenize, train and assess --force refuse a user's folder, naming what is in it", async () => {
    const d = userFolder("user");
    const guard = [d, tokens];
    await expectRefused(["tokenize", "-i", "data/tiny.h5ad", "-o", d, "--force", "-q"], [d, "not one", "notes.txt", OUTPUT_MARKER], guard);
    await expectRefused(["train", "--config", trainYaml("tu", { max_steps: 1 }, d), "--force"], [d, "not one"], guard);
    await expectRefused(["assess", "--input", "data/tiny.h5ad", "--output", d, "--force", "-q", "--min-cells", "50"], [d, "not one"], guard);
  });

  it("--force does not let one command replace another's folder (a training run is not a tokenize output)", async () => {
    const run = path.join(root, "run");
    await expectRefused(["tokenize", "-i", "data/tiny.h5ad", "-o", run, "--force", "-q"], [`${run} was written by cellfm train, not tokenize`], [run]);
    await expectRefused(["assess", "--input", "data/tiny.h5ad", "--output", tokens, "--force", "-q", "--min-cells", "50"], ["written by cellfm tokenize, not assess"], [tokens]);
  });

  it("tokenize --force replaces its own earlier output; embed --force replaces one file, and a folder never", async () => {
    const out = path.join(root, "tok-own");
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", out, "-q"])).code).toBe(0);
    expect(fs.existsSync(path.join(out, OUTPUT_MARKER))).toBe(true);
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", out, "-q", "--force"])).code).toBe(0);
    const e = path.join(root, "emb.arrow");
    fs.writeFileSync(e, "old");
    const sibling = path.join(root, "sibling.txt");
    fs.writeFileSync(sibling, "keep");
    const before = snapshot(sibling, tokens);
    expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", e, "-q", "--force"])).code).toBe(0);
    expect(fs.readFileSync(e).subarray(0, 6).toString()).toBe("ARROW1");
    expectUnchanged(before);
    const d = userFolder("emb-dir");
    await expectRefused(["embed", "-c", ckpt, "-i", tokens, "-o", d, "-q", "--force"], [`${d} is a folder`], [d]);
  });
});

describe("leftovers of killed writes", () => {
  it("are removed by the next run of the same command on the same output, and never taken for a result", async () => {
    // tokenize: a half-written dataset folder of a killed process
    const out = path.join(root, "tok-stale");
    const staleDir = `${out}.tmp-${DEAD_PID}-1`;
    fs.mkdirSync(staleDir);
    fs.writeFileSync(path.join(staleDir, "shard-00000.arrow"), "half");
    // a write of a live process (this one) is not touched
    const liveDir = `${out}.tmp-${process.pid}-2`;
    fs.mkdirSync(liveDir);
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", out, "-q"])).code).toBe(0);
    expect(fs.existsSync(staleDir)).toBe(false);
    expect(fs.existsSync(liveDir)).toBe(true);
    fs.rmSync(liveDir, { recursive: true });
    // embed: a half-written Arrow file
    const e = path.join(root, "stale.arrow");
    const staleFile = `${e}.tmp-${DEAD_PID}-1`;
    fs.writeFileSync(staleFile, "half");
    expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", e, "-q"])).code).toBe(0);
    expect(fs.existsSync(staleFile)).toBe(false);
    // a --force replacement killed between its two renames: the previous result is restored
    const prev = path.join(root, "prev.arrow");
    fs.copyFileSync(e, `${prev}.old-${DEAD_PID}-1`);
    expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", prev, "-q"])).message).toMatch(/already exists/);
    expect(fs.readFileSync(prev)).toEqual(fs.readFileSync(e));
  });

  it("train --resume removes a half-written checkpoint and resumes from the last complete one", async () => {
    const f = trainYaml("kill", { max_steps: 4, save_every: 2 });
    const run = path.join(root, "kill");
    expect((await cli(["train", "--config", f, "--quiet", "--max-steps", "4"])).code).toBe(0);
    fs.rmSync(path.join(run, "final"), { recursive: true });
    const half = path.join(run, `checkpoint-4.tmp-${DEAD_PID}-1`);
    fs.mkdirSync(half);
    fs.writeFileSync(path.join(half, "model.safetensors"), "half");
    expect((await cli(["train", "--config", f, "--quiet", "--resume"])).code).toBe(0);
    expect(fs.existsSync(half)).toBe(false);
    expect(fs.existsSync(path.join(run, "final", "model.safetensors"))).toBe(true);
  });
});
