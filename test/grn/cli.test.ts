import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tableFromIPC } from "apache-arrow";
import { main } from "../../src/cli.js";
import { packagePath } from "../../src/io.js";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { readSafetensors, writeSafetensors } from "../../src/model/safetensors.js";
import { buildModel, BINNED_ENCODING, COUNTS_ENCODING } from "../../src/model/factory.js";
import { type CellfmMeta, writeCheckpoint } from "../../src/model/checkpoint.js";
import { loadGeneformerDictionaries } from "../../src/tokenize/dictionaries.js";
import { readTruth } from "../../src/grn/truth.js";
import { parseGeneSpec } from "../../src/grn/data.js";
import { parseFilter, filterNetwork } from "../../src/grn/network.js";
import { TINY, useBackend } from "../model/helpers.js";

const tiny = packagePath("data", "tiny.h5ad");
const trrust = packagePath("data", "grn", "trrust_v2_human.tsv");
let dir: string, ckpt: string;

beforeAll(async () => {
  await useBackend("wasm");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-grn-"));
  const meta: CellfmMeta = {
    encoding: "geneformer-rank-value",
    objective: "mlm",
    model_version: "V1",
    dictionary: loadGeneformerDictionaries("V1").files.tokens,
    backend: "wasm",
    cellfm_version: "test",
    created: new Date().toISOString(),
  };
  const m = new BertForMaskedLM({ ...TINY, hidden_size: 16, intermediate_size: 32, vocab_size: 25426, max_position_embeddings: 128 }, { seed: 1 });
  ckpt = path.join(dir, "ckpt");
  writeCheckpoint(ckpt, { model: m, cellfm: meta, trainerState: { training: { seed: 1 } } });
  m.dispose();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const base = (out: string) => ["grn", "--input", tiny, "--output", out, "--backend", "wasm", "--quiet"];

describe("cellfm grn", () => {
  it("builds, scores and writes networks per cell type (attention, untrained, baselines), reproducibly", async () => {
    const out = path.join(dir, "run1");
    const args = [...base(out), "--checkpoint", ckpt, "--cell-type", "B", "NK", "--max-cells", "30", "--genes", "hvg:200", "--truth", trrust, "--untrained"];
    await main(args);
    const j = JSON.parse(fs.readFileSync(path.join(out, "grn.json"), "utf8"));
    expect(j.networks.map((x: { cell_type: string }) => x.cell_type)).toEqual(["B", "NK"]);
    const b = j.networks[0];
    expect(b.n_cells).toBe(30);
    expect(b.genes.used + b.genes.not_in_vocabulary.length + b.genes.duplicates_dropped.length).toBe(200);
    expect(b.genes.used).toBeGreaterThan(190);
    expect(Object.keys(b.scores).sort()).toEqual(["attention", "coexpression", "random", "untrained"]);
    for (const s of Object.values(b.scores) as Record<string, number>[]) expect(Number.isFinite(s.auprc)).toBe(true);
    const tsv = fs.readFileSync(path.join(out, "B", "edges.tsv"), "utf8").trim().split("\n");
    expect(tsv[0]).toBe("regulator\ttarget\tweight");
    const w = tsv.slice(1).map((l) => Number(l.split("\t")[2]));
    for (let i = 1; i < w.length; i++) expect(w[i]).toBeLessThanOrEqual(w[i - 1]);
    const arrow = tableFromIPC(fs.readFileSync(path.join(out, "B", "edges.arrow")));
    expect(arrow.numRows).toBe(tsv.length - 1);
    expect(arrow.schema.fields.map((f) => f.name)).toEqual(["regulator", "target", "regulator_id", "target_id", "weight"]);
    expect(fs.existsSync(path.join(out, "B", "matrix.tsv"))).toBe(true);
    // attention rows of genes present in some cell sum to 1 (mean of row-softmaxes)
    const m = fs.readFileSync(path.join(out, "B", "matrix.tsv"), "utf8").trim().split("\n").slice(1);
    const sums = m.map((l) => l.split("\t").slice(1).reduce((s, v) => s + Number(v), 0)).filter((s) => s > 0);
    for (const s of sums) expect(s).toBeCloseTo(1, 4);
    expect(fs.readFileSync(path.join(out, "scores.tsv"), "utf8").split("\n")[0]).toBe("cell_type\tmethod\tepr\tauprc\tauprc_ratio\tepr_tf\tbengrn_epr\tn_genes\tnever_in_input\trarely_in_input");
    // same seed, same result; refuses to overwrite without --force
    await expect(main(args)).rejects.toThrow(/already exists; pass --force/);
    const out2 = path.join(dir, "run2");
    await main(args.map((a) => (a === out ? out2 : a)));
    expect(fs.readFileSync(path.join(out2, "B", "edges.tsv"), "utf8")).toBe(fs.readFileSync(path.join(out, "B", "edges.tsv"), "utf8"));
  });

  it("method attention, head subset, top-k filter and tf-only rows; head selection scores on the held-out half", async () => {
    const out = path.join(dir, "run3");
    await main([...base(out), "--checkpoint", ckpt, "--cell-type", "B", "--max-cells", "20", "--genes", "hvg:150", "--truth", trrust,
      "--method", "attention", "--heads", "1:0,0:3", "--filter", "top-k:5", "--tf-only", "--no-baselines"]);
    const m = fs.readFileSync(path.join(out, "B", "matrix.tsv"), "utf8").trim().split("\n").slice(1).map((l) => l.split("\t").slice(1).map(Number));
    for (const row of m) expect(row.filter((v) => v !== 0).length).toBeLessThanOrEqual(5);
    const j = JSON.parse(fs.readFileSync(path.join(out, "grn.json"), "utf8"));
    expect(Object.keys(j.networks[0].scores)).toEqual(["attention"]);
    expect(m.filter((r) => r.some((v) => v !== 0)).length).toBeLessThanOrEqual(j.networks[0].truth.regulators);

    const out4 = path.join(dir, "run4");
    await main([...base(out4), "--checkpoint", ckpt, "--cell-type", "NK", "--max-cells", "25", "--genes", "hvg:300", "--truth", trrust, "--heads", "select", "--no-baselines"]);
    const s = JSON.parse(fs.readFileSync(path.join(out4, "grn.json"), "utf8")).networks[0].scores;
    expect(s.attention.scored_on).toMatch(/held-out half/);
    expect(s.attention.head_weights.length).toBe(8);
    expect(s.attention.fit.pairs).toBeGreaterThan(0.4 * (s.attention.fit.pairs + s.attention.score.pairs)); // about half each
    expect(s.attention.score.pairs).toBeGreaterThan(0.4 * (s.attention.fit.pairs + s.attention.score.pairs));
    expect(Number.isFinite(s.attention_mean_heads_same_half.epr)).toBe(true);
    expect(s.attention.score.trueEdges).toBeGreaterThan(0);
  });

  for (const [encoding, objective, head] of [
    [BINNED_ENCODING, "mlm", { n_bins: 51 }],
    [COUNTS_ENCODING, "denoise", { likelihood: "zinb" }],
  ] as const) {
    it(`${encoding} checkpoints: networks from value-keeping inputs, end to end`, async () => {
      const ck = path.join(dir, `ck-${encoding}`);
      const cfg = { ...TINY, hidden_size: 16, intermediate_size: 32, vocab_size: 25426, max_position_embeddings: 48 };
      const m = buildModel(cfg, { encoding, objective, head }, { seed: 2 });
      const meta: CellfmMeta = {
        encoding, objective, head, model_version: "V1", dictionary: loadGeneformerDictionaries("V1").files.tokens,
        backend: "wasm", cellfm_version: "test", created: new Date().toISOString(),
      };
      writeCheckpoint(ck, { model: m, cellfm: meta, trainerState: { training: { seed: 5 } } });
      m.dispose();
      const out = path.join(dir, `run-${encoding}`);
      await main([...base(out), "--checkpoint", ck, "--cell-type", "B", "--max-cells", "20", "--genes", "hvg:200", "--truth", trrust, "--untrained"]);
      const j = JSON.parse(fs.readFileSync(path.join(out, "grn.json"), "utf8"));
      expect(j.settings.encoding).toBe(encoding);
      expect(j.settings.input_context).toMatch(/expressed list genes with their values/);
      if (encoding === BINNED_ENCODING) expect([j.settings.n_bins, j.settings.binning_seed]).toEqual([51, 0]);
      const net = j.networks[0];
      expect(net.n_cells_tokenized).toBe(20);
      expect(Object.keys(net.scores).sort()).toEqual(["attention", "coexpression", "random", "untrained"]);
      for (const s of Object.values(net.scores) as Record<string, number>[]) expect(Number.isFinite(s.epr)).toBe(true);
      // list genes reach the model: most list genes occur in some cell's context
      const genes = fs.readFileSync(path.join(out, "B", "genes.tsv"), "utf8").trim().split("\n").slice(1).map((l) => Number(l.split("\t")[4]));
      expect(genes.filter((c) => c > 0).length).toBeGreaterThan(0.8 * genes.length);
      // trained and untrained weights (other seeds) give different networks
      expect(net.scores.attention.auprc).not.toBe(net.scores.untrained.auprc);
    });
  }

  it("bad input: clear errors, nothing written", async () => {
    const out = path.join(dir, "bad");
    const fails = async (extra: string[], re: RegExp) => {
      await expect(main([...base(out), ...extra])).rejects.toThrow(re);
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(dir).filter((f) => f.startsWith("bad.tmp"))).toEqual([]);
    };
    // a cell type with fewer cells than needed; one that does not exist
    await fails(["--cell-type", "B", "--min-cells", "60", "--max-cells", "100"], /cell type "B" has 50 cells, fewer than --min-cells 60/);
    await fails(["--cell-type", "Neuron"], /cell type "Neuron" is not in obs column "cell_type" \(types: .*B \(50\)/);
    // a gene list with under half of its genes in the vocabulary
    const list = path.join(dir, "genes.txt");
    fs.writeFileSync(list, ["LYZ", "MS4A1", "NOTAGENE1", "NOTAGENE2", "NOTAGENE3"].join("\n") + "\n");
    await fails(["--checkpoint", ckpt, "--cell-type", "B", "--genes", `file:${list}`], /only 2 of 5 genes are in the model's vocabulary \(under half\); not mapped: NOTAGENE1, NOTAGENE2, NOTAGENE3/);
    // a truth file with no edge among the chosen genes
    const truth = path.join(dir, "truth.tsv");
    fs.writeFileSync(truth, "tf\ttarget\nFOXP3\tIL2RA\nNOTAGENE1\tNOTAGENE2\n");
    await fails(["--cell-type", "B", "--genes", "hvg:50", "--truth", truth], /no edge of the ground truth joins two different genes of the chosen list \(50 genes\)/);
    await fails(["--cell-type", "B", "--truth", path.join(dir, "missing.tsv")], /missing\.tsv: truth file not found/);
    await fails(["--cell-type", "B", "--heads", "select"], /--heads select needs --truth/);
    await fails(["--cell-type", "B", "--tf-only"], /--tf-only needs --truth/);
    await fails(["--cell-type", "B", "--genes", "hvg:x"], /--genes "hvg:x": N must be an integer/);
    await fails(["--cell-type", "B", "--label", "celltype"], /obs has no column "celltype"/);
    await fails(["--cell-type", "B", "--checkpoint", ckpt, "--heads", "5:0"], /head 5:0 is outside the model/);
    await fails(["--cell-type", "B", "--checkpoint", ckpt, "--workers", "99"], /--workers 99 is more than the \d+ CPU core/);
    // a checkpoint without attention: its query/key weights are missing
    const noAttn = path.join(dir, "ck-no-attention");
    fs.cpSync(ckpt, noAttn, { recursive: true });
    const st = readSafetensors(path.join(noAttn, "model.safetensors"));
    delete st.tensors["bert.encoder.layer.1.attention.self.key.weight"];
    writeSafetensors(path.join(noAttn, "model.safetensors"), st.tensors);
    await fails(["--cell-type", "B", "--checkpoint", noAttn], /missing weight bert\.encoder\.layer\.1\.attention\.self\.key\.weight/);
  });

  it("writes the finished cell types when a later one fails, and counts genes never in any cell's input", async () => {
    const out = path.join(dir, "partial");
    const truth = path.join(dir, "nk-truth.tsv");
    fs.writeFileSync(truth, "tf\ttarget\nNKG7\tGNLY\nGNLY\tNKG7\n");
    const lines: string[] = [];
    const { runGrn } = await import("../../src/grn/run.js");
    // NK expresses both genes of the truth; B's genes (expressed in half its cells) hold no edge of it
    await expect(
      runGrn({ input: tiny, output: out, checkpoint: ckpt, cellTypes: ["NK", "B"], genes: "expressed:0.5", truth, maxCells: 30, backend: "wasm", log: (l) => lines.push(l) }),
    ).rejects.toThrow(/cell type "B" failed: .*no edge of the ground truth.*the 1 finished cell type\(s\) are written to .*partial/);
    const j = JSON.parse(fs.readFileSync(path.join(out, "grn.json"), "utf8"));
    expect(j.networks.map((x: { cell_type: string }) => x.cell_type)).toEqual(["NK"]);
    expect(j.failed_cell_types[0].cell_type).toBe("B");
    expect(fs.existsSync(path.join(out, "NK", "edges.tsv"))).toBe(true);
    expect(fs.existsSync(path.join(out, "B"))).toBe(false);
    const nk = j.networks[0];
    // a rank model reads each cell's top 128 genes: the list genes it never read are counted, named and marked
    const genes = fs.readFileSync(path.join(out, "NK", "genes.tsv"), "utf8").trim().split("\n").map((l) => l.split("\t"));
    expect(genes[0]).toEqual(["index", "ensembl_id", "symbol", "token", "cells_in_input", "in_input"]);
    const never = genes.slice(1).filter((g) => g[4] === "0");
    expect(never.every((g) => g[5] === "never")).toBe(true);
    expect(nk.genes.never_in_input).toBe(never.length);
    expect(nk.genes.never_in_input_genes).toHaveLength(never.length);
    const scores = fs.readFileSync(path.join(out, "scores.tsv"), "utf8").trim().split("\n").map((l) => l.split("\t"));
    expect(scores[1][scores[0].indexOf("never_in_input")]).toBe(String(never.length));
    expect(lines.some((l) => l.includes(`genes in the cells' input: ${nk.genes.used - never.length} of ${nk.genes.used}`))).toBe(true);
    if (never.length > nk.genes.used / 4) expect(lines.some((l) => /warning: \d+ of \d+ genes .* never entered any NK cell's input/.test(l))).toBe(true);
  });

  it("parses truth files, gene specs and filters", () => {
    const f = path.join(dir, "plain.tsv");
    fs.writeFileSync(f, "a\tb\nA\tB\nc\td\tx\n");
    expect(readTruth(f).edges).toEqual([["A", "B"], ["C", "D"]]); // no header recognised: every line an edge, duplicates once
    const t = readTruth(trrust);
    expect(t.rows).toBe(9396);
    expect(t.edges.length).toBe(8427);
    expect(parseGeneSpec("expressed:0.1")).toEqual({ kind: "expressed", minFraction: 0.1 });
    expect(() => parseGeneSpec("top:5")).toThrow(/expected hvg:N/);
    expect(() => parseFilter("top-k:0")).toThrow(/top-k:K/);
    const g = Float32Array.from([0.5, 0.3, 0.2, 0.1, 0.6, 0.3, 0.4, 0.4, 0.2]);
    expect(Array.from(filterNetwork(Float32Array.from(g), 3, { kind: "thresh" }))).toEqual(Array.from(g).map((v) => (v < 1 / 3 ? 0 : v)));
    expect(Array.from(filterNetwork(Float32Array.from(g), 3, { kind: "top-k", k: 1 }, Uint8Array.from([1, 1, 0])))).toEqual([
      Math.fround(0.5), 0, 0, 0, Math.fround(0.6), 0, 0, 0, 0,
    ]);
  });
});
