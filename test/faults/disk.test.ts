/**
 * Fault injection, a full disk (issue 20 §2): a write that ends short or fails (ENOSPC) never leaves
 * a result under its final name, removes its temporary file, and is one line naming the path; a
 * training run keeps its last checkpoint usable; a torn last line of metrics.jsonl does not block
 * --resume. Failures are injected through the write seam of src/io.ts (`writeFaults`), and for real
 * on a small tmpfs where this user may mount one (root, as CI runs); skipped with a printed reason
 * elsewhere. Tiny BERT on the 300 real PBMC cells of data/tiny.h5ad (golden Geneformer V1 tokens).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { writeFaults } from "../../src/io.js";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { TINY_MODEL, writeGoldenTokens } from "../train/helpers.js";
import { cli, expectRefused, snapshot, expectUnchanged, tmpDir } from "./helpers.js";

let root: string;
let tokens: string;
let ckpt: string;
let mnt: string | undefined;

beforeAll(async () => {
  root = tmpDir("disk");
  tokens = path.join(root, "tokens");
  writeGoldenTokens(tokens);
  expect((await cli(["train", "--config", trainYaml("run", { max_steps: 1 }), "--quiet"])).code).toBe(0);
  ckpt = path.join(root, "run", "final");
  const m = path.join(root, "full");
  fs.mkdirSync(m);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=24k", "tmpfs", m], { stdio: "pipe" });
    mnt = m;
  } catch (e) {
    console.log(`skipping the real-ENOSPC checks on a tmpfs: mount is not permitted here (${String((e as Error).message).split("\n")[0]})`);
  }
});
afterAll(() => {
  writeFaults.hook = undefined;
  if (mnt) execFileSync("umount", [mnt]);
  fs.rmSync(root, { recursive: true, force: true });
});

function trainYaml(name: string, training: Record<string, unknown>): string {
  const f = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: TINY_MODEL,
      data: { tokens, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 0, log_every: 1, eval_cells: 16, seed: 7, ...training },
      output: { dir: path.join(root, name) },
      backend: "wasm",
    }),
  );
  return f;
}

/** Make writes of files whose path contains `match` stop after `limit` bytes (a short write, then ENOSPC). */
function diskFullAfter(match: string, limit: number): void {
  writeFaults.hook = (file, written, want) => (file.includes(match) ? Math.max(0, Math.min(want, limit - written)) : undefined);
}

/** Expect a refused command that left nothing under `out` nor a temporary sibling. */
async function expectNoResult(args: string[], out: string, named = out): Promise<void> {
  const guard = snapshot(tokens, ckpt, "data/tiny.h5ad");
  try {
    await expectRefused(args, [`${named}: no space left on the device (ENOSPC)`]);
  } finally {
    writeFaults.hook = undefined;
  }
  expectUnchanged(guard);
  expect(fs.existsSync(out), `${out} exists`).toBe(false);
  expect(fs.readdirSync(path.dirname(out)).filter((n) => n.startsWith(`${path.basename(out)}.`))).toEqual([]);
}

describe("ENOSPC through the write seam", () => {
  it("embed -o, medians and tokenize: exit 1, one line naming the path, nothing under the final name, no temporary file", async () => {
    const e = path.join(root, "emb.arrow");
    diskFullAfter("emb.arrow", 24_576);
    await expectNoResult(["embed", "-c", ckpt, "-i", tokens, "-o", e, "-q"], e);
    const m = path.join(root, "med.tsv");
    diskFullAfter("med.tsv", 4096);
    await expectNoResult(["medians", "-i", "data/tiny.h5ad", "-o", m, "-q"], m);
    const t = path.join(root, "tok");
    diskFullAfter("shard-00000.arrow", 10_000);
    await expectNoResult(["tokenize", "-i", "data/tiny.h5ad", "-o", t, "-q"], t, path.join(t, "shard-00000.arrow"));
  });

  it("short writes (each write taking part of its bytes) are continued: the same file as without them", async () => {
    const a = path.join(root, "short-a.arrow"), b = path.join(root, "short-b.arrow");
    expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", a, "-q"])).code).toBe(0);
    writeFaults.hook = (file, _written, want) => (file.includes("short-b") ? Math.max(1, Math.floor(want / 3)) : undefined);
    try {
      expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", b, "-q"])).code).toBe(0);
    } finally {
      writeFaults.hook = undefined;
    }
    expect(fs.readFileSync(b).subarray(0, 6).toString()).toBe("ARROW1");
    expect(fs.statSync(b).size).toBe(fs.statSync(a).size);
  });

  it("train: a full disk while saving a checkpoint is one line naming it; the last checkpoint is whole and --resume continues", async () => {
    const f = trainYaml("fullrun", { max_steps: 3, save_every: 1 });
    const run = path.join(root, "fullrun");
    diskFullAfter(`${path.sep}checkpoint-2`, 1000);
    let r;
    try {
      r = await cli(["train", "--config", f, "--quiet"]);
    } finally {
      writeFaults.hook = undefined;
    }
    expect(r.code).toBe(1);
    expect(r.message).toMatch(new RegExp(`^${run}/checkpoint-2/\\S+: no space left on the device \\(ENOSPC\\)`));
    expect(r.message.split("\n")).toHaveLength(1);
    expect(fs.readdirSync(run).sort()).toEqual([".cellfm.json", "checkpoint-1", "metrics.jsonl", "run.json"]);
    readCheckpoint(path.join(run, "checkpoint-1")).model.dispose();
    expect((await cli(["train", "--config", f, "--quiet", "--resume"])).code).toBe(0);
    expect(fs.existsSync(path.join(run, "final", "model.safetensors"))).toBe(true);
  });
});

describe("a torn metrics.jsonl", () => {
  it("a torn last line is dropped with a warning on --resume; a bad line elsewhere names the file and the line", async () => {
    const f = trainYaml("torn", { max_steps: 3, save_every: 1 });
    const run = path.join(root, "torn");
    expect((await cli(["train", "--config", f, "--quiet"])).code).toBe(0);
    fs.rmSync(path.join(run, "final"), { recursive: true });
    fs.rmSync(path.join(run, "eval.json"));
    const metrics = path.join(run, "metrics.jsonl");
    const good = fs.readFileSync(metrics, "utf8").trim().split("\n").slice(0, -1); // as before the final row
    fs.writeFileSync(metrics, good.join("\n") + '\n{"step":3,"epoch":0.2,"lo');
    const warned: string[] = [];
    const err = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (warned.push(String(s)), true)) as typeof process.stderr.write;
    let r;
    try {
      r = await cli(["train", "--config", f, "--quiet", "--resume"]);
    } finally {
      process.stderr.write = err;
    }
    expect(r.code).toBe(0);
    expect(warned.join("")).toContain(`${metrics}: dropped its last line`);
    for (const l of fs.readFileSync(metrics, "utf8").trim().split("\n")) JSON.parse(l);
    fs.rmSync(path.join(run, "final"), { recursive: true });
    const rows = fs.readFileSync(metrics, "utf8").trim().split("\n");
    fs.writeFileSync(metrics, [rows[0], '{"step":1,"lo', ...rows.slice(1)].join("\n") + "\n");
    await expectRefused(["train", "--config", f, "--quiet", "--resume"], [`${metrics}: line 2 is not valid JSON`], [path.join(run, "checkpoint-2")]);
  });
});

describe("ENOSPC on a real full file system (tmpfs of 24 KiB)", () => {
  it("embed -o, embed --h5ad and medians: one line naming the path, nothing under the final name", async (ctx) => {
    if (!mnt) return ctx.skip();
    const e = path.join(mnt, "emb.arrow");
    await expectNoResult(["embed", "-c", ckpt, "-i", tokens, "-o", e, "-q"], e);
    const h = path.join(mnt, "emb.h5ad");
    await expectNoResult(["embed", "-c", ckpt, "-i", tokens, "-o", path.join(root, "ok.arrow"), "--h5ad", h, "-q"], h);
    const m = path.join(mnt, "med.tsv");
    await expectNoResult(["medians", "-i", "data/tiny.h5ad", "-o", m, "-q"], m); // 34 kB of medians
    expect(fs.readdirSync(mnt)).toEqual([]);
  });
});
