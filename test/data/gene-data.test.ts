import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { Field, FixedSizeList, Float32, Table, Utf8, makeData, makeVector, tableToIPC, vectorFromArray } from "apache-arrow";
import { matchGeneEmbeddings, readGeneEmbeddings } from "../../src/data/gene-embeddings.js";
import { dropGenes, heldOutMask, splitGenes } from "../../src/data/gene-split.js";
import { readGenomicPositions, sinusoidalTable, tokenPositionTable } from "../../src/data/genomic-positions.js";
import { loadGeneformerDictionaries } from "../../src/tokenize/dictionaries.js";
import { tmpDir } from "./helpers.js";

function write(dir: string, name: string, text: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
}

describe("gene-embeddings files", () => {
  it("reads a TSV with a header, skips comments, and lines vectors up with the V1 vocabulary (symbols too)", () => {
    const dir = tmpDir();
    const f = write(dir, "g.tsv", "gene_id\td0\td1\td2\n# ESM2, reduced\nENSG00000187608.9\t1\t2\t3\nCD3E\t0.5\t-1e-3\t7\n\nNOT_A_GENE\t0\t0\t0\n");
    const e = readGeneEmbeddings(f);
    expect([e.ids, e.dim, Array.from(e.vectors)]).toEqual([["ENSG00000187608.9", "CD3E", "NOT_A_GENE"], 3, [1, 2, 3, 0.5, Math.fround(-1e-3), 7, 0, 0, 0]]);
    const dict = loadGeneformerDictionaries("V1");
    const m = matchGeneEmbeddings(e, dict.tokens, dict.vocabSize);
    const t1 = dict.tokens.get("ENSG00000187608")!;
    const t2 = dict.tokens.get("ENSG00000198851")!; // CD3E
    expect(Array.from(m.table.subarray(t1 * 3, t1 * 3 + 3))).toEqual([1, 2, 3]);
    expect(m.table[t2 * 3 + 2]).toBe(7);
    expect([m.has[t1], m.has[t2], m.fromSymbols, m.unused]).toEqual([1, 1, 1, ["NOT_A_GENE"]]);
    expect(m.missing.length).toBe(dict.tokens.size - 2 - 2); // all but the 2 matched genes and <pad>, <mask>
  });

  it("errors name the line: wrong width, duplicate gene, non-number; same gene twice via a symbol", () => {
    const dir = tmpDir();
    expect(() => readGeneEmbeddings(write(dir, "a.tsv", "G1\t1\t2\nG2\t1\n"))).toThrow(/a\.tsv:2: gene G2 has 1 values, expected 2/);
    expect(() => readGeneEmbeddings(write(dir, "b.tsv", "G1\t1\t2\nG3\t1\t2\nG1\t3\t4\n"))).toThrow(/b\.tsv:3: duplicate gene G1 \(first on line 1\)/);
    expect(() => readGeneEmbeddings(write(dir, "c.tsv", "G1\t1\t2\nG2\t1\tx\n"))).toThrow(/c\.tsv:2: gene G2, value 2 "x" is not a finite number/);
    expect(() => readGeneEmbeddings(write(dir, "d.tsv", "G1\t1\tNaN\n"))).toThrow(/d\.tsv:1: gene G1, value 2 "NaN"/);
    expect(readGeneEmbeddings(write(dir, "e.csv", "G1,1\n")).ids).toEqual(["G1"]); // CSV too (src/data/table.ts)
    expect(() => readGeneEmbeddings(write(dir, "e.json", "{}"))).toThrow(/must be a \.tsv, \.csv or \.arrow file/);
    const dict = loadGeneformerDictionaries("V1");
    const twice = readGeneEmbeddings(write(dir, "f.tsv", "ENSG00000198851\t1\nCD3E\t2\n"));
    expect(() => matchGeneEmbeddings(twice, dict.tokens, dict.vocabSize)).toThrow(/genes ENSG00000198851 and CD3E are the same gene/);
  });

  it("reads Arrow files with a fixed-size-list vector column or one column per dimension", () => {
    const dir = tmpDir();
    const child = makeData({ type: new Float32(), length: 4, nullCount: 0, data: Float32Array.of(1, 2, 3, 4) } as never);
    const listType = new FixedSizeList(2, new Field("item", new Float32(), true));
    const emb = makeVector(makeData({ type: listType, length: 2, nullCount: 0, child } as never));
    const t1 = new Table({ gene_id: vectorFromArray(["G1", "G2"], new Utf8()), embedding: emb });
    fs.writeFileSync(path.join(dir, "a.arrow"), tableToIPC(t1, "file"));
    const a = readGeneEmbeddings(path.join(dir, "a.arrow"));
    expect([a.ids, a.dim, Array.from(a.vectors)]).toEqual([["G1", "G2"], 2, [1, 2, 3, 4]]);
    const t2 = new Table({ gene: vectorFromArray(["G1", "G2"], new Utf8()), d0: makeVector(Float64Array.of(1, 3)), d1: makeVector(Float64Array.of(2, NaN)) });
    fs.writeFileSync(path.join(dir, "b.arrow"), tableToIPC(t2, "file"));
    expect(() => readGeneEmbeddings(path.join(dir, "b.arrow"))).toThrow(/b\.arrow: row 2 \(gene G2\), column d1 \(NaN\) is not a finite number/);
    const t3 = new Table({ gene: vectorFromArray(["G1", "G1"], new Utf8()), d0: makeVector(Float64Array.of(1, 3)) });
    fs.writeFileSync(path.join(dir, "c.arrow"), tableToIPC(t3, "file"));
    expect(() => readGeneEmbeddings(path.join(dir, "c.arrow"))).toThrow(/c\.arrow: row 2: duplicate gene G1 \(first in row 1\)/);
  });
});

describe("genomic positions (scPRINT / scDataLoader rule)", () => {
  it("genes within 10 kb of the previous start share a position; a new chromosome starts a new one", () => {
    const dir = tmpDir();
    const f = write(
      dir,
      "genes.tsv",
      "ensembl_id\tgene_symbol\tchromosome\tstart\n" +
        ["A\tx\t2\t100", "B\tx\t1\t50000", "C\tx\t1\t1000", "D\tx\t1\t11000", "E\tx\t1\t21001", "F\tx\t10\t5", "G\tx\t1\t", "H\tx\t2\t10100"].join("\n") +
        "\n",
    );
    // sorted: chr "1": C 1000, D 11000 (+10000, same), E 21001 (+10001, new), B 50000 (new); "10": F; "2": A 100, H 10100 (same)
    const p = readGenomicPositions(f);
    expect(Object.fromEntries(p.position)).toEqual({ C: 1, D: 1, E: 2, B: 3, F: 4, A: 5, H: 5 });
    expect([p.maxPosition, p.unplaced]).toEqual([5, 1]);
  });

  it("the sinusoidal table and the bundled table cover most of the V1 vocabulary", () => {
    const pe = sinusoidalTable(3, 4);
    const w1 = Math.exp((2 * -Math.log(10000)) / 4);
    expect(Array.from(pe.subarray(0, 4))).toEqual([0, 1, 0, 1]);
    expect(pe[2 * 4 + 0]).toBeCloseTo(Math.sin(2), 6);
    expect(pe[2 * 4 + 3]).toBeCloseTo(Math.cos(2 * w1), 6);
    const dict = loadGeneformerDictionaries("V1");
    const t = tokenPositionTable(dict.tokens, dict.vocabSize, 8);
    const placed = dict.tokens.size - 2 - t.unplaced.length;
    expect(placed / (dict.tokens.size - 2)).toBeGreaterThan(0.6);
    const pos = readGenomicPositions();
    const tok = dict.tokens.get("ENSG00000198851")!; // CD3E, chr11
    const p = pos.position.get("ENSG00000198851")!;
    expect(t.positionOfToken[tok]).toBe(p);
    const ref = sinusoidalTable(p + 1, 8);
    expect(Array.from(t.table.subarray(tok * 8, tok * 8 + 8))).toEqual(Array.from(ref.subarray(p * 8, p * 8 + 8)));
    expect(pos.position.get("ENSG00000223972")).toBe(1); // DDX11L1, chr1:11873, the first placed gene of chromosome "1"
    expect(Array.from(t.table.subarray(dict.tokens.get("<pad>")! * 8, dict.tokens.get("<pad>")! * 8 + 8)).every((v) => v === 0)).toBe(true);
  });
});

describe("gene split (data.split.genes)", () => {
  it("holds out round(n * fraction) genes, independent of the candidates' order; dropGenes removes them", () => {
    const tokens = Array.from({ length: 1000 }, (_, i) => 5 + 3 * i);
    const a = splitGenes(tokens, 0.1, 42);
    const b = splitGenes([...tokens].reverse(), 0.1, 42);
    expect(a.heldOut.length).toBe(100);
    expect(a.train.length).toBe(900);
    expect(Array.from(b.heldOut)).toEqual(Array.from(a.heldOut));
    expect(Array.from(splitGenes(tokens, 0.1, 43).heldOut)).not.toEqual(Array.from(a.heldOut));
    const mask = heldOutMask(a.heldOut, 4000);
    const ids = Int32Array.from(tokens.slice(0, 50));
    const d = dropGenes(ids, Float32Array.from(ids, (t) => t / 2), mask);
    expect(d.ids.length).toBe(50 - tokens.slice(0, 50).filter((t) => mask[t]).length);
    expect(Array.from(d.ids).every((t, i) => !mask[t] && d.values[i] === t / 2)).toBe(true);
    expect(() => splitGenes(tokens, 1, 1)).toThrow(/data\.split\.genes must be in \[0, 1\)/);
    expect(() => splitGenes([1, 1], 0.5, 1)).toThrow(/duplicate token ids/);
  });
});
