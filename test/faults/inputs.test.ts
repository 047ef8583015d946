/**
 * Fault injection, inputs (issue 8 §3 and §5): bad counts files, truncated files, inputs that do
 * not belong together, config mistakes, corrupt checkpoints, file-system errors. Each case runs the
 * CLI and checks the exit code, that the one-line message names the file and the problem, and
 * that every file that existed before is unchanged. Real cells: data/tiny.h5ad (300 PBMC cells).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { explainFsError } from "../../src/cli.js";
import { openCounts } from "../../src/data/open.js";
import { writeCsrH5ad } from "../../src/data/h5ad.js";
import { knownGenes, writeDenseAsH5ad } from "../data/helpers.js";
import { TINY_MODEL } from "../train/helpers.js";
import { cli, expectRefused, snapshot, expectUnchanged, spawnCli, tmpDir } from "./helpers.js";

let root: string;
let tokens: string; // data/tiny.h5ad tokenized with the bundled V1 dictionary
let ckpt: string; // a 1-step tiny model trained on them

function trainYaml(name: string, training: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const f = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: TINY_MODEL,
      data: { tokens, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, eval_cells: 16, seed: 7, ...training },
      output: { dir: path.join(root, name) },
      backend: "wasm",
      ...extra,
    }),
  );
  return f;
}

beforeAll(async () => {
  root = tmpDir("inputs");
  tokens = path.join(root, "tokens");
  expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", tokens, "-q", "--carry", "cell_type,batch"])).code).toBe(0);
  expect((await cli(["train", "--config", trainYaml("run", { max_steps: 1 }), "--quiet"])).code).toBe(0);
  ckpt = path.join(root, "run", "final");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const tok = (input: string, extra: string[] = []) => ["tokenize", "-i", input, "-o", path.join(root, "never"), "-q", ...extra];

describe("counts files", () => {
  it("a missing file, a folder that is not 10x, a file that is not HDF5", async () => {
    await expectRefused(tok(path.join(root, "no", "such.h5ad")), ["such.h5ad", "not found"]);
    const notes = path.join(root, "notes.h5ad");
    fs.writeFileSync(notes, "cell,gene,count\n");
    await expectRefused(tok(notes), [notes, "not an HDF5"], [notes]);
    const empty = path.join(root, "emptydir");
    fs.mkdirSync(empty);
    await expectRefused(tok(empty), [empty, "10x"]);
  });

  it("a truncated .h5ad: one line saying so, no HDF5 diagnostics (unless --verbose)", async () => {
    const f = path.join(root, "trunc.h5ad");
    fs.writeFileSync(f, fs.readFileSync("data/tiny.h5ad").subarray(0, 200_000));
    await expectRefused(tok(f), [f, "truncated HDF5 file", "200000 bytes"], [f]);
    // as a real process: stderr is the one line
    const r = await spawnCli(tok(f));
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain("HDF5-DIAG");
    expect(r.stderr.trim().split("\n").filter((l) => l.startsWith("cellfm:"))).toHaveLength(1);
    // a file whose superblock survived but whose metadata is overwritten: corrupt, one line
    const g = path.join(root, "garbled.h5ad");
    const buf = fs.readFileSync("data/tiny.h5ad");
    buf.fill(0x5a, 200, 4096);
    fs.writeFileSync(g, buf);
    const r2 = await spawnCli(tok(g));
    expect(r2.code).toBe(1);
    expect(r2.stderr).not.toContain("HDF5-DIAG");
    expect(r2.stderr).toContain(g);
  });

  it.each([
    ["negative", -1, /has a negative count \(-1\)/],
    ["NaN", NaN, /has a NaN count/],
    ["non-integer", 0.5, /has a non-integer count \(0\.5\)/],
  ])("%s counts name the file and the cell", async (_n, bad, re) => {
    const f = path.join(root, `bad-${_n}.h5ad`);
    await writeDenseAsH5ad(f, [[1, 2, 3], [0, bad, 3]], knownGenes(3));
    await expectRefused(tok(f), [f, re, 'cell 1 ("cell1")'], [f]);
  });

  it("no gene IDs / fewer than half known, a missing --carry column, an empty matrix", async () => {
    const sym = path.join(root, "symbols.h5ad");
    await writeDenseAsH5ad(sym, [[1, 2, 3, 4]], ["FOO1", "BAR2", "BAZ3", "QUX4"], { varColumns: {} });
    await expectRefused(tok(sym), [sym, /0 of 4 genes/, "--id-column"], [sym]);
    const few = path.join(root, "few.h5ad");
    await writeDenseAsH5ad(few, [[1, 2, 3, 4, 5]], [...knownGenes(2), "FOO1", "BAR2", "BAZ3"]);
    await expectRefused(tok(few), [few, /only 2 of 5 genes/], [few]);
    await expectRefused(tok("data/tiny.h5ad", ["--carry", "donor"]), ["tiny.h5ad", '--carry column "donor" is not in obs']);
    const empty = path.join(root, "empty.h5ad");
    await writeDenseAsH5ad(empty, [], knownGenes(3));
    await expectRefused(tok(empty), [empty, /no cells|0 cells|empty/]);
  });

  it("a 10x folder with a missing or inconsistent file", async () => {
    const d = path.join(root, "tenx");
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, "matrix.mtx"), "%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1\n");
    fs.writeFileSync(path.join(d, "features.tsv"), "ENSG00000187608\tISG15\tGene Expression\n");
    await expectRefused(tok(d), [d, "barcodes.tsv"], [d]);
    fs.writeFileSync(path.join(d, "barcodes.tsv"), "A\nB\n");
    await expectRefused(tok(d), ["matrix.mtx", "features.tsv has 1 rows"], [d]);
  });

  it("a path through a file (ENOTDIR) and a permission error (EACCES) are one line naming the path", async () => {
    const file = path.join(root, "a-file");
    fs.writeFileSync(file, "x");
    await expectRefused(["tokenize", "-i", "data/tiny.h5ad", "-o", path.join(file, "out"), "-q"], [file, "is a file, not a folder"], [file]);
    // root may read anything, so EACCES is exercised on the error itself
    const e = Object.assign(new Error("EACCES: permission denied, mkdir '/data/x'"), { code: "EACCES", path: "/data/x" });
    expect((explainFsError(e) as Error).message).toBe("/data/x: permission denied (EACCES): this user may not read or write it; check its permissions or choose another path");
    const plain = new Error("something else");
    expect(explainFsError(plain)).toBe(plain);
  });
});

describe("tokens, configs and checkpoints", () => {
  it("a truncated token shard is named in train and embed (the manifest records size and checksum)", async () => {
    const cut = path.join(root, "tokens-cut");
    fs.cpSync(tokens, cut, { recursive: true });
    const manifest = JSON.parse(fs.readFileSync(path.join(cut, "manifest.json"), "utf8"));
    const shard = path.join(cut, manifest.shards[0].file);
    expect(manifest.shards[0].bytes).toBe(fs.statSync(shard).size);
    expect(manifest.shards[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    fs.truncateSync(shard, Math.floor(manifest.shards[0].bytes / 2));
    const f = path.join(root, "cut.yaml");
    fs.writeFileSync(f, fs.readFileSync(trainYaml("cut", { max_steps: 1 }), "utf8").replace(tokens, cut));
    await expectRefused(["train", "--config", f], [shard, "truncated token shard"], [cut]);
    await expectRefused(["embed", "-c", ckpt, "-i", cut, "-o", path.join(root, "cut.arrow"), "-q"], [shard, "truncated token shard"], [cut, ckpt]);
    // same size, one byte changed: the checksum catches it
    fs.cpSync(path.join(tokens, manifest.shards[0].file), shard);
    const b = fs.readFileSync(shard);
    b[b.length >> 1] ^= 0xff;
    fs.writeFileSync(shard, b);
    await expectRefused(["embed", "-c", ckpt, "-i", cut, "-o", path.join(root, "cut.arrow"), "-q"], [shard, "SHA-256 differs"], [cut]);
  });

  it("config typos and wrong types name the file and the key", async () => {
    const typo = path.join(root, "typo.yaml");
    fs.writeFileSync(typo, fs.readFileSync(trainYaml("typo", { max_steps: 1 }), "utf8").replace("batch_size", "batch_sise"));
    await expectRefused(["train", "--config", typo], [typo, "batch_sise"], [typo]);
    const wrong = trainYaml("wrong", { max_steps: 1, lr: "fast" });
    await expectRefused(["train", "--config", wrong], [wrong, "training.lr"], [wrong]);
    expect(fs.existsSync(path.join(root, "wrong"))).toBe(false);
  });

  it("corrupt, half-written and mismatched checkpoints", async () => {
    const bad = path.join(root, "bad-ck");
    fs.cpSync(ckpt, bad, { recursive: true });
    const st = path.join(bad, "model.safetensors");
    fs.truncateSync(st, fs.statSync(st).size - 100);
    const out = path.join(root, "e.arrow");
    await expectRefused(["embed", "-c", bad, "-i", tokens, "-o", out, "-q"], [st, "truncated"], [bad, tokens]);
    const half = `${path.join(root, "ck")}.tmp-123-456`;
    fs.cpSync(ckpt, half, { recursive: true });
    await expectRefused(["embed", "-c", half, "-i", tokens, "-o", out, "-q"], [half, "half-written"], [half]);
    await expectRefused(["embed", "-c", path.join(root, "ck"), "-i", tokens, "-o", out, "-q"], ["not found", "half-written checkpoint"]);
    // tokens made with another dictionary than the checkpoint's
    const other = path.join(root, "tokens-v2");
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", other, "-q", "--model-version", "V2"])).code).toBe(0);
    await expectRefused(["embed", "-c", ckpt, "-i", other, "-o", out, "-q"], [other, ckpt, "dictionary"], [other, ckpt]);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe("assess: inputs that do not belong together", () => {
  it("embeddings of other data (same cell ids, permuted obs index) are refused naming both; --allow-input-mismatch overrides", async () => {
    const emb = path.join(root, "tiny.arrow");
    expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", emb, "-q"])).code).toBe(0);
    // a copy of tiny.h5ad whose obs index is reversed: the same ids now name other cells
    const src = await openCounts("data/tiny.h5ad");
    const chunk = [...src.chunks(src.nCells)][0];
    const perm = path.join(root, "tiny-permuted.h5ad");
    await writeCsrH5ad(perm, {
      nCells: src.nCells,
      nGenes: src.nGenes,
      nnz: chunk.indices.length,
      rows: [{ indptr: chunk.indptr, indices: chunk.indices, data: chunk.data }],
      obs: { index: [...src.obs.index].reverse(), columns: { cell_type: src.obs.columns.cell_type as string[] } },
      var: { index: src.var.index, columns: src.var.columns as Record<string, string[]> },
    });
    src.close();
    const out = path.join(root, "assess");
    const args = ["assess", "--input", perm, "--embeddings", emb, "--output", out, "-q", "--min-cells", "20", "--n-hvg", "200"];
    await expectRefused(args, [emb, perm, "not the same data", "--allow-input-mismatch", path.resolve("data/tiny.h5ad")], [emb, perm]);
    expect(fs.existsSync(out)).toBe(false);
    const ok = await cli([...args, "--allow-input-mismatch"]);
    expect(ok.message).toBe("");
    expect(fs.existsSync(path.join(out, "metrics.json"))).toBe(true);
    // the matching input is accepted
    const ok2 = await cli(["assess", "--input", "data/tiny.h5ad", "--embeddings", emb, "--output", path.join(root, "assess2"), "-q", "--min-cells", "20", "--n-hvg", "200"]);
    expect(ok2.message).toBe("");
  });

  it("a missing --label column and embeddings with a NaN are errors naming them", async () => {
    const out = path.join(root, "assess-bad");
    await expectRefused(["assess", "--input", "data/tiny.h5ad", "--output", out, "-q", "--label", "celltype"], ["tiny.h5ad", '"celltype"', "--label"]);
    const { readEmbeddings, writeEmbeddings } = await import("../../src/data/embeddings.js");
    expect(() => writeEmbeddings(path.join(root, "nan.arrow"), { cellIds: ["a", "b"], dim: 2, data: Float32Array.from([1, 2, NaN, 4]) })).toThrow(
      /nan\.arrow: 1 non-finite value \(first: NaN in row 1, cell "b"\)/,
    );
    expect(fs.existsSync(path.join(root, "nan.arrow"))).toBe(false);
    void readEmbeddings;
  });
});

describe("kill -9 and concurrent writers", () => {
  it("kill -9 during training (checkpoints every step): --resume finishes with the uninterrupted run's result", async () => {
    const f = trainYaml("k9", { max_steps: 30, save_every: 1, log_every: 1 });
    const r = await spawnCli(["train", "--config", f], { signal: "SIGKILL", when: /step 6\/30/ });
    expect(r.signal).toBe("SIGKILL");
    const run = path.join(root, "k9");
    const before = snapshot(path.join(root, "tokens"));
    expect((await cli(["train", "--config", f, "--quiet", "--resume"])).code).toBe(0);
    expectUnchanged(before);
    expect(fs.readdirSync(run).filter((n) => n.includes(".tmp-"))).toEqual([]);
    const straight = trainYaml("k9s", { max_steps: 30, save_every: 1, log_every: 1 });
    expect((await cli(["train", "--config", straight, "--quiet"])).code).toBe(0);
    const ev = (d: string) => JSON.parse(fs.readFileSync(path.join(root, d, "eval.json"), "utf8")).model_loss;
    expect(ev("k9")).toBe(ev("k9s"));
  });

  it("two tokenize runs onto one output at once: one result, whole; the other refused", async () => {
    const out = path.join(root, "race");
    const [a, b] = await Promise.all([cli(tok("data/tiny.h5ad").map((x) => (x.endsWith("never") ? out : x))), cli(tok("data/tiny.h5ad").map((x) => (x.endsWith("never") ? out : x)))]);
    const codes = [a.code, b.code].sort();
    expect(codes).toEqual([0, 1]);
    expect([a.message, b.message].join("")).toMatch(/already exists/);
    expect(JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")).n_cells).toBe(300);
    expect(fs.readdirSync(root).filter((n) => n.startsWith("race."))).toEqual([]);
  });
});
