/**
 * User tables (src/data/table.ts): the same annotations written the ways users write them — the
 * bundled TSV, pandas `to_csv` (comma, index column with an empty name), R `write.table` (quoted,
 * header one field short), gzipped — read the same; gene lists, truth files and gene embeddings as CSV.
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { readObsTable, readTextTable, sniffDelimiter } from "../../src/data/table.js";
import { openCounts } from "../../src/data/open.js";
import { readTruth } from "../../src/grn/truth.js";
import { readGeneEmbeddingsTsv } from "../../src/data/gene-embeddings.js";
import { tmpDir } from "./helpers.js";

const labels = fs.readFileSync("data/tiny_mtx/tiny_labels.tsv", "utf8").trim().split("\n").map((l) => l.split("\t"));
const barcodes = labels.slice(1).map((r) => r[0]);

describe("user tables", () => {
  it("reads the bundled TSV, a pandas CSV, an R write.table file and a gzipped copy as the same obs", () => {
    const dir = tmpDir("table");
    const ref = readObsTable("data/tiny_mtx/tiny_labels.tsv", barcodes);
    const pandas = path.join(dir, "obs.csv");
    fs.writeFileSync(pandas, [",cell_type,batch", ...labels.slice(1).map((r) => r.join(","))].join("\n") + "\n");
    const r = path.join(dir, "obs_r.txt");
    fs.writeFileSync(r, ['"cell_type"\t"batch"', ...labels.slice(1).map((x) => x.map((f) => `"${f}"`).join("\t"))].join("\n") + "\n");
    const gz = path.join(dir, "obs.tsv.gz");
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync("data/tiny_mtx/tiny_labels.tsv")));
    for (const f of [pandas, r, gz]) {
      const t = readObsTable(f, barcodes);
      expect(Object.keys(t.columns)).toEqual(["cell_type", "batch"]);
      expect(t.columns.cell_type).toEqual(ref.columns.cell_type);
    }
    // quoted fields with the delimiter inside, and CRLF line ends
    const q = path.join(dir, "q.csv");
    fs.writeFileSync(q, 'barcode,note\r\n' + barcodes.map((b, i) => `${b},"a, ""quoted"" ${i}"`).join("\r\n") + "\r\n");
    expect((readObsTable(q, barcodes).columns.note as string[])[1]).toBe('a, "quoted" 1');
    // a barcode of the data with no row: one line naming the file, the barcode and the count
    expect(() => readObsTable(q, [...barcodes, "NOPE"])).toThrow(/q\.csv: no row for barcode "NOPE".*first column must hold the barcodes/);
  });

  it("a 10x folder takes a pandas CSV as --obs", async () => {
    const dir = tmpDir("table-mtx");
    const csv = path.join(dir, "labels.csv");
    fs.writeFileSync(csv, [",cell_type,batch", ...labels.slice(1).map((r) => r.join(","))].join("\n") + "\n");
    const src = await openCounts("data/tiny_mtx", { obsTsv: csv });
    expect((src.obs.columns.cell_type as string[]).slice(0, 2)).toEqual(["B", "B"]);
    src.close();
  });

  it("detects the delimiter from the content, outside quotes", () => {
    expect(sniffDelimiter("a\tb,c")).toBe("\t");
    expect(sniffDelimiter('"a\tb",c')).toBe(",");
    expect(sniffDelimiter("gene")).toBe("\t");
    const dir = tmpDir("table-sniff");
    const f = path.join(dir, "genes.txt");
    fs.writeFileSync(f, "# my genes\nCD3E,x\nMS4A1,y\n\n");
    expect(readTextTable(f, "gene list", { comments: true }).rows.map((x) => x[0])).toEqual(["CD3E", "MS4A1"]);
  });

  it("reads truth edges and gene embeddings from CSV", () => {
    const dir = tmpDir("table-truth");
    const t = path.join(dir, "truth.csv");
    fs.writeFileSync(t, "source,target\nSTAT1,IRF1\n\"SPI1\",CD14\n");
    expect(readTruth(t).edges).toEqual([["STAT1", "IRF1"], ["SPI1", "CD14"]]);
    const e = path.join(dir, "emb.csv");
    fs.writeFileSync(e, ",0,1\nCD3E,0.5,1\nMS4A1,-1,2\n"); // pandas to_csv of a genes x dims frame
    const g = readGeneEmbeddingsTsv(e);
    expect(g.ids).toEqual(["CD3E", "MS4A1"]);
    expect(Array.from(g.vectors)).toEqual([0.5, 1, -1, 2]);
  });
});
