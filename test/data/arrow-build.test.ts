import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import * as esm from "apache-arrow";
import { arrow } from "../../src/data/arrow.js";
import { TokenizedDatasetWriter, utf8Vector } from "../../src/data/tokenized.js";
import { tmpDir } from "./helpers.js";

// cellfm loads apache-arrow from its single-file build (src/data/arrow.ts); these tests check that it is
// the same library as the ES-module build a user (or pyarrow-like reader) would use on the files.
describe("apache-arrow single-file build (src/data/arrow.ts)", () => {
  it("is the ES-module build's API: every exported name is there, with the same kind", () => {
    const missing = Object.keys(esm).filter((k) => !(k in arrow));
    expect(missing).toEqual([]);
    for (const k of ["Table", "RecordBatchFileWriter", "makeData", "tableFromIPC", "vectorFromArray", "AsyncByteQueue"] as const) {
      expect(typeof arrow[k]).toBe(typeof esm[k]);
    }
  });

  it("writes byte-identical IPC files to the ES-module build for the tokenized-dataset column types", () => {
    const build = (A: typeof esm) => {
      const vals = Int32Array.of(5, 4, 3, 9, 7, 8);
      const child = A.makeData({ type: new A.Int32(), length: vals.length, nullCount: 0, data: vals });
      const list = A.makeData({ type: new A.List(new A.Field("item", new A.Int32(), true)), length: 3, nullCount: 0, valueOffsets: Int32Array.of(0, 3, 4, 6), child });
      const t = new A.Table({
        cell_id: A.vectorFromArray(["a", "bé", ""], new A.Utf8()),
        input_ids: A.makeVector(list),
        length: A.makeVector(Int32Array.of(3, 1, 2)),
        n_counts: A.makeVector(Float64Array.of(10.5, 20, 1e-300)),
        ok: A.vectorFromArray([true, false, true], new A.Bool()),
      });
      return A.tableToIPC(t, "file");
    };
    const a = build(arrow);
    const b = build(esm);
    expect(a.length).toBeGreaterThan(0);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it("a shard written by TokenizedDatasetWriter reads back with the ES-module build, column for column", () => {
    const dir = path.join(tmpDir(), "tokens");
    const w = new TokenizedDatasetWriter(dir, { encoding: "geneformer-rank-value", model_version: "V1" });
    w.append({
      cellIds: ["AAAC-1", "AAAG-1", "x"],
      flat: { offsets: Int32Array.of(0, 3, 4, 6), values: Int32Array.of(105, 4, 3, 9, 25425, 8) },
      flatValues: Float32Array.of(1, 2, 3, 0.5, 4, 5),
      nCounts: Float64Array.of(2419, 4903, 3147),
      obs: { cell_type: ["B", "T", "NK"], score: Float64Array.of(0.25, -1, 3), ok: [true, false, true] },
    });
    const m = w.finish();
    const t = esm.tableFromIPC(fs.readFileSync(path.join(dir, m.shards[0].file)));
    expect(t.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual([
      "cell_id:Utf8",
      "input_ids:List<Int32>",
      "length:Int32",
      "values:List<Float32>",
      "n_counts:Float64",
      "cell_type:Utf8",
      "score:Float64",
      "ok:Bool",
    ]);
    expect(t.getChild("cell_id")!.toArray()).toEqual(["AAAC-1", "AAAG-1", "x"]);
    expect([...t.getChild("input_ids")!].map((v) => Array.from(v!.toArray() as Int32Array))).toEqual([[105, 4, 3], [9], [25425, 8]]);
    expect(Array.from(t.getChild("length")!.toArray() as Int32Array)).toEqual([3, 1, 2]);
    expect([...t.getChild("values")!].map((v) => Array.from(v!.toArray() as Float32Array))).toEqual([[1, 2, 3], [0.5], [4, 5]]);
    expect(Array.from(t.getChild("n_counts")!.toArray() as Float64Array)).toEqual([2419, 4903, 3147]);
    expect(t.getChild("cell_type")!.toArray()).toEqual(["B", "T", "NK"]);
    expect(Array.from(t.getChild("score")!.toArray() as Float64Array)).toEqual([0.25, -1, 3]);
    expect([...t.getChild("ok")!]).toEqual([true, false, true]);
  });

  it("utf8Vector gives the same IPC bytes as vectorFromArray(strings, Utf8) (empty, non-ASCII, surrogates)", () => {
    const cases: string[][] = [[], [""], ["AAACATACAACCAC-1", "", "é", "日本語", "😀x", "a\u0000b", "\ud800lone"], Array.from({ length: 3000 }, (_, i) => `cell_${i}_${"ü".repeat(i % 5)}`)];
    for (const strings of cases) {
      const mine = arrow.tableToIPC(new arrow.Table({ s: utf8Vector(strings) }), "file");
      const ref = arrow.tableToIPC(new arrow.Table({ s: arrow.vectorFromArray(strings, new arrow.Utf8()) }), "file");
      expect(Buffer.from(mine).equals(Buffer.from(ref))).toBe(true);
      expect(esm.tableFromIPC(mine).getChild("s")!.toArray()).toEqual(strings.map((x) => x.replace("\ud800", "\ufffd")));
    }
  });
});

