import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tableToIPC, tableFromArrays, vectorFromArray, List, Field, Float32, Table } from "apache-arrow";
import { writeEmbeddings, readEmbeddings } from "../../src/data/embeddings.js";

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-emb-"));
}

describe("embeddings file (Arrow IPC)", () => {
  it("round-trips ids, float32 data, obs columns of each kind and metadata", () => {
    const dir = tmp();
    const file = path.join(dir, "e.arrow");
    const data = new Float32Array([1.5, -2, 3, 4, 5, 6.25]);
    writeEmbeddings(file, {
      cellIds: ["c1", "c2"],
      dim: 3,
      data,
      obs: { index: ["c1", "c2"], columns: { cell_type: ["T", "B"], n_counts: new Float64Array([10, 20.5]), pass: [true, false] } },
      meta: { layer: "-2", pool: "mean" },
    });
    const r = readEmbeddings(file);
    expect(r.cellIds).toEqual(["c1", "c2"]);
    expect(r.dim).toBe(3);
    expect(Array.from(r.data)).toEqual(Array.from(data));
    expect(r.obs.columns.cell_type).toEqual(["T", "B"]);
    expect(Array.from(r.obs.columns.n_counts as Float64Array)).toEqual([10, 20.5]);
    expect(r.obs.columns.pass).toEqual([true, false]);
    expect(r.meta).toEqual({ layer: "-2", pool: "mean" });
    // the file is an Arrow IPC *file* (magic "ARROW1" at both ends)
    const bytes = fs.readFileSync(file);
    expect(bytes.subarray(0, 6).toString()).toBe("ARROW1");
    expect(bytes.subarray(bytes.length - 6).toString()).toBe("ARROW1");
  });

  it("refuses to overwrite without force and replaces with force", () => {
    const dir = tmp();
    const file = path.join(dir, "e.arrow");
    const e = { cellIds: ["a"], dim: 2, data: new Float32Array([1, 2]) };
    writeEmbeddings(file, e);
    expect(() => writeEmbeddings(file, e)).toThrow(/already exists.*--force/);
    writeEmbeddings(file, { ...e, data: new Float32Array([7, 8]) }, { force: true });
    expect(Array.from(readEmbeddings(file).data)).toEqual([7, 8]);
  });

  it("rejects bad shapes without writing", () => {
    const dir = tmp();
    const file = path.join(dir, "e.arrow");
    expect(() => writeEmbeddings(file, { cellIds: ["a", "b"], dim: 2, data: new Float32Array(3) })).toThrow(/expected nCells \* dim/);
    expect(() =>
      writeEmbeddings(file, { cellIds: ["a"], dim: 1, data: new Float32Array(1), obs: { index: ["a"], columns: { x: ["1", "2"] } } }),
    ).toThrow(/obs column "x" has 2 values/);
    expect(() => writeEmbeddings(file, { cellIds: ["a", "a"], dim: 1, data: new Float32Array(2) })).toThrow(/more than once/);
    expect(fs.existsSync(file)).toBe(false);
  });

  it("gives clear errors naming the file for missing, corrupt and incomplete files", () => {
    const dir = tmp();
    expect(() => readEmbeddings(path.join(dir, "nope.arrow"))).toThrow(/nope\.arrow does not exist/);
    const bad = path.join(dir, "bad.arrow");
    fs.writeFileSync(bad, "not arrow at all");
    expect(() => readEmbeddings(bad)).toThrow(/bad\.arrow is not a readable Arrow IPC file/);
    const noEmb = path.join(dir, "noemb.arrow");
    fs.writeFileSync(noEmb, tableToIPC(tableFromArrays({ cell_id: ["a", "b"] }), "file"));
    expect(() => readEmbeddings(noEmb)).toThrow(/noemb\.arrow has no "embedding" column \(columns: cell_id\)/);
  });

  it("reads a variable-size list<float32> embedding column (as pyarrow writes from lists)", () => {
    const dir = tmp();
    const file = path.join(dir, "list.arrow");
    const emb = vectorFromArray([[1, 2], [3, 4], [5, 6]], new List(new Field("item", new Float32(), true)));
    const t = new Table({ cell_id: vectorFromArray(["x", "y", "z"]), embedding: emb });
    fs.writeFileSync(file, tableToIPC(t, "file"));
    const r = readEmbeddings(file);
    expect(r.dim).toBe(2);
    expect(Array.from(r.data)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
