import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TokenizedDatasetWriter, readTokenizedDataset, writeTokenizedDataset } from "../../src/data/tokenized.js";

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-tok-"));
}

describe("tokenized dataset (Arrow IPC shards + manifest)", () => {
  it("round-trips ids, lengths, values and carried obs columns across shards", () => {
    const dir = path.join(tmp(), "tokens");
    const w = new TokenizedDatasetWriter(dir, { encoding: "geneformer-rank-value", model_version: "V1" }, { shardCells: 2 });
    w.append({
      cellIds: ["a", "b", "c"],
      inputIds: [Int32Array.of(5, 4, 3), Int32Array.of(9), Int32Array.of(7, 8)],
      values: [Float32Array.of(1, 2, 3), Float32Array.of(0.5), Float32Array.of(4, 5)],
      obs: { cell_type: ["B", "T", "NK"], n_counts: Float64Array.of(10, 20, 30), ok: [true, false, true] },
    });
    w.append({
      cellIds: ["d"],
      inputIds: [Int32Array.of(2, 100, 3)],
      values: [Float32Array.of(0, 1.5, 0)],
      obs: { cell_type: ["B"], n_counts: Float64Array.of(40), ok: [false] },
    });
    const m = w.finish();
    expect(m.n_cells).toBe(4);
    expect(m.shards.map((s) => s.n_cells)).toEqual([3, 1]);
    const ds = readTokenizedDataset(dir);
    expect(ds.cellIds).toEqual(["a", "b", "c", "d"]);
    expect(ds.inputIds.map((a) => Array.from(a))).toEqual([[5, 4, 3], [9], [7, 8], [2, 100, 3]]);
    expect(Array.from(ds.lengths)).toEqual([3, 1, 2, 3]);
    expect(ds.values!.map((a) => Array.from(a))).toEqual([[1, 2, 3], [0.5], [4, 5], [0, 1.5, 0]]);
    expect(ds.obs.columns.cell_type).toEqual(["B", "T", "NK", "B"]);
    expect(Array.from(ds.obs.columns.n_counts as Float64Array)).toEqual([10, 20, 30, 40]);
    expect(ds.obs.columns.ok).toEqual([true, false, true, false]);
    expect(ds.manifest.model_version).toBe("V1");
    expect(ds.manifest.columns.map((c) => c.type)).toEqual(["utf8", "list<int32>", "int32", "list<float32>", "utf8", "float64", "bool"]);
  });

  it("refuses an existing output without force and leaves it untouched", () => {
    const dir = path.join(tmp(), "tokens");
    const data = { meta: { encoding: "geneformer-rank-value" }, cellIds: ["x"], inputIds: [Int32Array.of(3)] };
    writeTokenizedDataset(dir, data);
    const before = fs.readFileSync(path.join(dir, "manifest.json"), "utf8");
    expect(() => writeTokenizedDataset(dir, { ...data, cellIds: ["y"] })).toThrow(/already exists.*--force/);
    expect(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")).toBe(before);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(["tokens"]);
    writeTokenizedDataset(dir, { ...data, cellIds: ["y"] }, { force: true });
    expect(readTokenizedDataset(dir).cellIds).toEqual(["y"]);
  });

  it("names the folder when the manifest is missing", () => {
    const dir = tmp();
    expect(() => readTokenizedDataset(dir)).toThrow(/manifest\.json is missing/);
  });
});
