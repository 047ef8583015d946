import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEmbeddings } from "../../src/data/embeddings.js";
import { embedCells, planBatches } from "../../src/embed/embed.js";
import { embedToFile } from "../../src/embed/run.js";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { writeCheckpoint, type CellfmMeta } from "../../src/model/checkpoint.js";
import { loadGeneformerDictionaries } from "../../src/tokenize/dictionaries.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { main } from "../../src/cli.js";
import { makeBatch, maxAbsDiff, randomCells, TINY, useBackend } from "../model/helpers.js";
import { packagePath } from "../../src/io.js";
import h5wasm from "h5wasm/node";
import type { Dataset, Group } from "h5wasm/node";

let dir: string;
beforeAll(async () => {
  await useBackend("cpu");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-embed-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("embedCells", () => {
  it("does not depend on batch mates, padding or chunking; keeps input order", () => {
    const m = new BertForMaskedLM(TINY, { seed: 3 });
    const cells = randomCells(13, 1, 40, 200, 5).map((c) => Int32Array.from(c));
    const n0 = tf.memory().numTensors;
    const ref = embedCells(m, cells, { maxTokensPerBatch: 1 }); // one cell per pass
    expect(tf.memory().numTensors).toBe(n0);
    expect(ref.length).toBe(13 * 32);
    for (const budget of [40, 100, 333, 100000]) {
      const e = embedCells(m, cells, { maxTokensPerBatch: budget });
      expect(maxAbsDiff(e, ref), `budget ${budget}`).toBeLessThan(1e-5);
    }
    // chunking: embedding a subset gives the same rows
    const sub = embedCells(m, cells.slice(5, 9));
    expect(maxAbsDiff(sub, ref.subarray(5 * 32, 9 * 32))).toBeLessThan(1e-5);
    // input order: reversed input gives reversed rows
    const rev = embedCells(m, [...cells].reverse());
    expect(maxAbsDiff(rev.subarray(0, 32), ref.subarray(12 * 32, 13 * 32))).toBeLessThan(1e-5);
    m.dispose();
  });

  it("pools layer num_layers + layer (Geneformer emb_layer) by mean over tokens, or position 0", () => {
    const m = new BertForMaskedLM(TINY, { seed: 4 });
    const cell = [5, 9, 17, 33, 2];
    const b = makeBatch([cell]);
    const out = m.forward(b, { training: false, outputHiddenStates: true });
    const hs = out.hiddenStates!.map((h) => h.arraySync()[0]);
    const mean = (rows: number[][], skip: Set<number> = new Set()) => {
      const keep = rows.filter((_, i) => !skip.has(i));
      return keep[0].map((_, j) => keep.reduce((s, r) => s + r[j], 0) / keep.length);
    };
    const e1 = embedCells(m, [Int32Array.from(cell)]); // layer -1 → hiddenStates[1] of a 2-layer model
    expect(maxAbsDiff(e1, mean(hs[1]))).toBeLessThan(1e-5);
    const e0 = embedCells(m, [Int32Array.from(cell)], { layer: 0 });
    expect(maxAbsDiff(e0, mean(hs[2]))).toBeLessThan(1e-5);
    const cls = embedCells(m, [Int32Array.from(cell)], { layer: 0, pool: "cls" });
    expect(maxAbsDiff(cls, hs[2][0])).toBeLessThan(1e-6);
    const ex = embedCells(m, [Int32Array.from(cell)], { excludeSpecial: [5, 2] });
    expect(maxAbsDiff(ex, mean(hs[1], new Set([0, 4])))).toBeLessThan(1e-5);
    const empty = embedCells(m, [new Int32Array(0), Int32Array.from(cell)]);
    expect(Number.isNaN(empty[0])).toBe(true);
    expect(maxAbsDiff(empty.subarray(32), e1)).toBeLessThan(1e-5);
    expect(() => embedCells(m, [Int32Array.from(cell)], { layer: 1 })).toThrow(/layer must be an integer in \[-2, 0\]/);
    expect(() => embedCells(m, [new Int32Array(65)])).toThrow(/cell 0 has 65 tokens/);
    tf.dispose([out.lastHiddenState, ...out.hiddenStates!, b.inputIds, b.attentionMask]);
    m.dispose();
  });

  it("plans length-sorted batches under the token budget", () => {
    const plan = planBatches([3, 10, 1, 7, 10], 20);
    expect(plan.flat().sort()).toEqual([0, 1, 2, 3, 4]);
    expect(plan[0]).toEqual([1, 4]);
    for (const b of plan) expect(b.length === 1 || Math.max(...b.map((i) => [3, 10, 1, 7, 10][i])) * b.length <= 20).toBe(true);
  });
});

describe("cellfm embed", () => {
  const V1 = { ...TINY, vocab_size: 25426, max_position_embeddings: 256 };
  let ckpt: string, tokens: string;
  beforeAll(async () => {
    const dict = loadGeneformerDictionaries("V1");
    const meta: CellfmMeta = {
      encoding: "geneformer-rank-value",
      objective: "mlm",
      model_version: "V1",
      dictionary: dict.files.tokens,
      backend: "cpu",
      cellfm_version: "test",
      created: new Date().toISOString(),
    };
    const m = new BertForMaskedLM(V1, { seed: 1 });
    ckpt = path.join(dir, "ckpt");
    writeCheckpoint(ckpt, { model: m, cellfm: meta });
    m.dispose();
    tokens = path.join(dir, "tokens");
    await tokenizeToDataset({ input: packagePath("data", "tiny.h5ad"), output: tokens, modelVersion: "V1", quiet: true, carry: ["cell_type"] });
  });

  it("embeds a tokenized folder and the same .h5ad directly, identically, in input order with obs carried", async () => {
    const out1 = path.join(dir, "a.arrow");
    // worker threads (2) for the folder; in-process for the .h5ad below: same numbers
    await main(["embed", "--checkpoint", ckpt, "--input", tokens, "--output", out1, "--backend", "wasm", "--quiet", "--workers", "2", "--max-tokens", "2048"]);
    const a = readEmbeddings(out1);
    expect(a.dim).toBe(32);
    expect(a.cellIds.length).toBeGreaterThan(250);
    expect(a.meta.layer).toBe("-1");
    expect(Object.keys(a.obs.columns)).toContain("cell_type");
    const out2 = path.join(dir, "b.arrow");
    const h5 = path.join(dir, "b.h5ad");
    const lines: string[] = [];
    const s = await embedToFile({ checkpoint: ckpt, input: packagePath("data", "tiny.h5ad"), output: out2, h5ad: h5, backend: "wasm", workers: 1, log: (l) => lines.push(l) });
    expect(s.workers).toBe(1);
    expect(a.meta.backend).toBe("wasm");
    expect(s.genesUnknown).toBeGreaterThanOrEqual(0);
    expect(lines.join("\n")).toMatch(/genes known to the checkpoint's V1 dictionary/);
    const b = readEmbeddings(out2);
    expect(b.cellIds).toEqual(a.cellIds);
    expect(maxAbsDiff(a.data, b.data)).toBeLessThan(1e-5);
    // a copy of the input AnnData (X, obs with its categoricals, var kept) + obsm/X_cellfm [n_obs, hidden] float32 + uns/cellfm_embed
    await h5wasm.ready;
    const f = new h5wasm.File(h5, "r");
    const g = new h5wasm.File(packagePath("data", "tiny.h5ad"), "r");
    try {
      expect(f.attrs["encoding-type"].value).toBe("anndata");
      const x = f.get("obsm/X_cellfm") as Dataset;
      const index = (f.get("obs/_index") as Dataset).value as string[];
      expect(index).toEqual((g.get("obs/_index") as Dataset).value);
      expect(x.shape).toEqual([index.length, 32]);
      expect(x.dtype).toBe("<f");
      expect(x.attrs["encoding-type"].value).toBe("array");
      const xv = x.value as Float32Array;
      a.cellIds.forEach((id, i) => expect(maxAbsDiff(xv.subarray(index.indexOf(id) * 32, index.indexOf(id) * 32 + 32), a.data.subarray(i * 32, i * 32 + 32))).toBe(0));
      expect((f.get("obs/cell_type") as Group).attrs["encoding-type"].value).toBe("categorical");
      expect((f.get("obs/cell_type/codes") as Dataset).value).toEqual((g.get("obs/cell_type/codes") as Dataset).value);
      expect((f.get("X/data") as Dataset).value).toEqual((g.get("X/data") as Dataset).value);
      expect((f.get("uns/cellfm_embed/obsm_key") as Dataset).value).toBe("X_cellfm");
    } finally {
      f.close();
      g.close();
    }
    // no overwrite without --force
    await expect(main(["embed", "-c", ckpt, "-i", tokens, "-o", out1, "--backend", "wasm", "-q"])).rejects.toThrow(/already exists.*--force/);
    await main(["embed", "-c", ckpt, "-i", tokens, "-o", out1, "--backend", "wasm", "-q", "--force", "--hidden-layer", "0", "--workers", "1"]);
    expect(readEmbeddings(out1).meta.layer).toBe("0");
  });

  it("refuses a bad checkpoint, a mismatched dictionary, and --pool cls on V1, writing nothing", async () => {
    const out = path.join(dir, "c.arrow");
    await expect(embedToFile({ checkpoint: path.join(dir, "nope"), input: tokens, output: out, backend: "cpu", quiet: true })).rejects.toThrow(/nope not found/);
    const manifest = JSON.parse(fs.readFileSync(path.join(tokens, "manifest.json"), "utf8"));
    const other = path.join(dir, "tokens-other");
    fs.cpSync(tokens, other, { recursive: true });
    fs.writeFileSync(path.join(other, "manifest.json"), JSON.stringify({ ...manifest, dictionary: { name: "x.tsv", sha256: "f".repeat(64) } }));
    await expect(embedToFile({ checkpoint: ckpt, input: other, output: out, backend: "cpu", quiet: true })).rejects.toThrow(/re-tokenize/);
    await expect(embedToFile({ checkpoint: ckpt, input: tokens, output: out, backend: "cpu", quiet: true, pool: "cls" })).rejects.toThrow(/V2/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("--shard k/N: the N embedding files merge (any order) to exactly the unsharded file", async () => {
    const whole = path.join(dir, "whole.arrow");
    await main(["embed", "-c", ckpt, "-i", tokens, "-o", whole, "--backend", "wasm", "-q", "--workers", "1"]);
    const parts = [0, 1, 2].map((k) => path.join(dir, `part-${k}.arrow`));
    for (const [k, f] of parts.entries()) await main(["embed", "-c", ckpt, "-i", tokens, "-o", f, "--backend", "wasm", "-q", "--workers", "1", "--shard", `${k}/3`]);
    expect(JSON.parse(readEmbeddings(parts[1]).meta.shard)).toEqual({ index: 1, count: 3 });
    const merged = path.join(dir, "merged.arrow");
    await main(["merge", "-i", parts[2], parts[0], parts[1], "-o", merged, "-q"]);
    const a = readEmbeddings(whole);
    const b = readEmbeddings(merged);
    expect(b.cellIds).toEqual(a.cellIds);
    expect(b.data).toEqual(a.data);
    expect(b.obs.columns).toEqual(a.obs.columns);
    expect(b.meta.shard).toBeUndefined();
    await expect(main(["merge", "-i", parts[0], parts[1], "-o", path.join(dir, "m2.arrow"), "-q"])).rejects.toThrow(/shards 2\/3 are missing/);
    await expect(main(["embed", "-c", ckpt, "-i", tokens, "-o", path.join(dir, "x.arrow"), "--shard", "3/3"])).rejects.toThrow(/--shard must be k\/N/);
  });
});
