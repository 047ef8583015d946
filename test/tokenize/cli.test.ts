import { afterEach, describe, expect, it, vi } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../../src/cli.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { readMediansTsv } from "../../src/tokenize/dictionaries.js";
import { tmpDir, writeDenseAsH5ad, knownGenes } from "../data/helpers.js";

afterEach(() => vi.restoreAllMocks());

async function run(args: string[]): Promise<string> {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
  await main(args);
  return lines.join("\n");
}

describe("cellfm tokenize (end to end)", () => {
  it("tokenizes the bundled pbmc3k with V1, carries obs, prints and saves the summary", async () => {
    const out = path.join(tmpDir(), "tokens");
    const text = await run(["tokenize", "--input", "data/pbmc3k_seurat.h5ad", "--output", out, "--model-version", "V1", "--carry", "cell_type,batch"]);
    expect(text).toMatch(/2638 kept, 0 dropped/);
    expect(text).toMatch(/11884 matched/);
    const s = JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8"));
    expect(s.n_cells).toBe(2638);
    expect(s.cells_written).toBe(2638);
    expect(s.genes_matched).toBe(11884); // 13,714 var genes, 508 without an Ensembl ID, the rest not in gc30M
    expect(s.genes_unknown).toBe(13714 - 11884);
    expect(s.n_counts_source).toBe("row sum of all var columns");
    expect([s.length_min, s.length_median, s.length_max]).toEqual([208, 791.5, 2048]);
    expect(s.cells_truncated).toBe(1);
    const ds = readTokenizedDataset(out);
    expect(ds.cellIds).toHaveLength(2638);
    expect(ds.manifest.model_version).toBe("V1");
    expect(ds.manifest.encoding).toBe("geneformer-rank-value");
    expect(ds.manifest.dictionary?.sha256).toBe("af80a2d2924b0ca6b621db075599198a5aad6ee08682909edeebc8de1d122ce2");
    expect(ds.manifest.source?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(ds.obs.columns.cell_type).toHaveLength(2638);
    expect(new Set(ds.obs.columns.cell_type as string[]).size).toBe(9);
    expect(Math.max(...ds.lengths)).toBe(2048);
    expect(ds.inputIds[0].length).toBe(ds.lengths[0]);
  });

  it("writes the golden V2 tokens through the CLI (10x folder input, labels carried)", async () => {
    const out = path.join(tmpDir(), "tok");
    await run(["tokenize", "-i", "data/tiny_mtx", "-o", out, "--model-version", "V2", "--obs", "data/tiny_mtx/tiny_labels.tsv", "--carry", "cell_type", "--quiet", "--chunk-size", "50"]);
    const ds = readTokenizedDataset(out);
    const gold = fs.readFileSync("test/fixtures/golden/tiny.v2.jsonl", "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(ds.cellIds).toEqual(gold.map((g) => g.cell));
    expect(ds.inputIds.map((a) => Array.from(a))).toEqual(gold.map((g) => g.input_ids));
    expect(ds.obs.columns.cell_type).toHaveLength(300);
  });
});

describe("cellfm tokenize: summary of dropped and filtered cells", () => {
  it("names the empty cell and counts filter_pass failures (synthetic golden file)", async () => {
    const out = path.join(tmpDir(), "tokens");
    await expect(run(["tokenize", "-i", "test/fixtures/golden/synth_float32.h5ad", "-o", out, "--carry", "cell_type,cell_id"])).rejects.toThrow(
      /--carry column "cell_id" has the name of a tokenized-dataset column/,
    );
    expect(fs.existsSync(out)).toBe(false);
    const text = await run(["tokenize", "-i", "test/fixtures/golden/synth_float32.h5ad", "-o", out, "--model-version", "V2", "--carry", "cell_type"]);
    expect(text).toMatch(/238 kept, 1 dropped \(no known expressed gene: cell0002\), 1 failing filter_pass/);
    expect(text).toMatch(/10 genes summed from 20 var genes/);
    expect(text).toMatch(/n_counts: obs/);
    const ds = readTokenizedDataset(out);
    expect(ds.obs.columns.cell_type).toHaveLength(238);
    expect(ds.inputIds.every((a) => a[0] === 2 && a[a.length - 1] === 3)).toBe(true);
  });
});

describe("cellfm tokenize: bad input writes nothing", () => {
  it("refuses an existing output without --force", async () => {
    const dir = tmpDir();
    const out = path.join(dir, "tokens");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "keep.txt"), "mine");
    await expect(run(["tokenize", "-i", "data/tiny.h5ad", "-o", out, "-q"])).rejects.toThrow(/already exists; pass --force/);
    expect(fs.readdirSync(out)).toEqual(["keep.txt"]);
    expect(fs.readdirSync(dir)).toEqual(["tokens"]);
  });

  it("names a --carry column that does not exist", async () => {
    const dir = tmpDir();
    const out = path.join(dir, "tokens");
    await expect(run(["tokenize", "-i", "data/tiny.h5ad", "-o", out, "--carry", "cell_type,donor", "-q"])).rejects.toThrow(
      /tiny\.h5ad: --carry column "donor" is not in obs \(obs columns: cell_type, batch\)/,
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("errors when fewer than half of the genes are known, suggesting --id-column", async () => {
    const dir = tmpDir();
    const f = path.join(dir, "symbols.h5ad");
    const genes = [...knownGenes(2), "FOO1", "BAR2", "BAZ3"];
    await writeDenseAsH5ad(f, [[1, 2, 3, 4, 5]], genes);
    const out = path.join(dir, "tokens");
    await expect(run(["tokenize", "-i", f, "-o", out, "-q"])).rejects.toThrow(/only 2 of 5 genes \(40\.0%\).*--id-column/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("errors on non-integer counts mid-file and leaves no output", async () => {
    const dir = tmpDir();
    const f = path.join(dir, "lognorm.h5ad");
    const rows = Array.from({ length: 20 }, (_, i) => [1, i, 2, 0]);
    rows[13][2] = 1.386;
    await writeDenseAsH5ad(f, rows, knownGenes(4));
    const out = path.join(dir, "tokens");
    await expect(run(["tokenize", "-i", f, "-o", out, "-q", "--chunk-size", "4"])).rejects.toThrow(/lognorm\.h5ad.*cell 13 \("cell13"\) has a non-integer count/);
    expect(fs.readdirSync(dir)).toEqual(["lognorm.h5ad"]);
    // ... and it goes through with --allow-non-integer
    await run(["tokenize", "-i", f, "-o", out, "-q", "--allow-non-integer"]);
    expect(readTokenizedDataset(out).cellIds).toHaveLength(20);
  });

  it("maps gene symbols in the var index to Ensembl IDs", async () => {
    const dir = tmpDir();
    const f = path.join(dir, "sym.h5ad");
    // ISG15 = ENSG00000187608, CD3E = ENSG00000198851, CD19 = ENSG00000177455
    await writeDenseAsH5ad(f, [[1, 5, 2]], ["ISG15", "CD3E", "CD19"], { varColumns: {} });
    const out = path.join(dir, "tokens");
    await run(["tokenize", "-i", f, "-o", out, "-q"]);
    const s = JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8"));
    expect(s.gene_id_source).toBe("var index");
    expect(s.genes_from_symbols).toBe(3);
    expect(s.genes_matched).toBe(3);
  });
});

describe("cellfm medians", () => {
  it("computes exact per-gene nonzero medians and tokenizes with them", async () => {
    const dir = tmpDir();
    const f = path.join(dir, "m.h5ad");
    const g = knownGenes(3);
    // n_counts per cell = row sums: 10, 4, 20
    await writeDenseAsH5ad(f, [[5, 5, 0], [1, 0, 3], [10, 0, 10]], g);
    const out = path.join(dir, "med.tsv");
    await run(["medians", "-i", f, "-o", out, "-q"]);
    const { medians } = readMediansTsv(out);
    // gene0: 5000, 2500, 5000 -> 5000; gene1: 5000; gene2: 7500, 5000 -> mean 6250
    expect(medians.get(g[0])).toBe(5000);
    expect(medians.get(g[1])).toBe(5000);
    expect(medians.get(g[2])).toBe(6250);
    expect(fs.readFileSync(out, "utf8").split("\n")[0]).toBe("ensembl_id\tnonzero_median");
    await expect(run(["medians", "-i", f, "-o", out, "-q"])).rejects.toThrow(/already exists/);
    const tok = path.join(dir, "tok");
    await run(["tokenize", "-i", f, "-o", tok, "-q", "--medians", out]);
    const ds = readTokenizedDataset(tok);
    // cell 1: gene0 2500/5000 = 0.5, gene2 7500/6250 = 1.2 -> gene2 first
    expect(Array.from(ds.inputIds[1])).toEqual([4, 2]);
    expect(ds.manifest.medians?.name).toBe("med.tsv");
  });

  it("t-digest medians agree with exact ones on tiny", async () => {
    const dir = tmpDir();
    const exact = path.join(dir, "exact.tsv");
    const digest = path.join(dir, "digest.tsv");
    await run(["medians", "-i", "data/tiny.h5ad", "-o", exact, "-q"]);
    await run(["medians", "-i", "data/tiny.h5ad", "-o", digest, "-q", "--exact-limit", "0"]);
    const a = readMediansTsv(exact).medians;
    const b = readMediansTsv(digest).medians;
    expect(b.size).toBe(a.size);
    let close = 0;
    for (const [id, m] of a) if (Math.abs((b.get(id) ?? 0) - m) <= 0.05 * m) close++;
    expect(close / a.size).toBeGreaterThan(0.9);
  });
});
