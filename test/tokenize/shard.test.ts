import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { packagePath } from "../../src/io.js";
import { parseShard, shardRange } from "../../src/shard.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { tmpDir } from "../data/helpers.js";

const tiny = packagePath("data", "tiny.h5ad");

/** summary.json without the run time. */
function summary(dir: string): Record<string, unknown> {
  const s = JSON.parse(fs.readFileSync(path.join(dir, "summary.json"), "utf8"));
  delete s.seconds;
  return s;
}

function sameDataset(a: string, b: string): void {
  const x = readTokenizedDataset(a);
  const y = readTokenizedDataset(b);
  expect(y.cellIds).toEqual(x.cellIds);
  expect(y.inputIds).toEqual(x.inputIds);
  expect(y.lengths).toEqual(x.lengths);
  expect(y.obs.columns).toEqual(x.obs.columns);
  for (const k of ["encoding", "model_version", "dictionary", "medians", "source", "n_cells", "columns", "obs_columns"] as const) expect(y.manifest[k]).toEqual(x.manifest[k]);
  expect(summary(b)).toEqual(summary(a));
}

describe("shards", () => {
  it("parses k/N and cuts contiguous ranges covering every cell once", () => {
    expect(parseShard("3/8")).toEqual({ index: 3, count: 8 });
    for (const bad of ["8/8", "-1/4", "1", "a/b", "1/0"]) expect(() => parseShard(bad)).toThrow(/--shard must be k\/N/);
    for (const [n, N] of [[10, 3], [2, 5], [0, 2], [301, 7]]) {
      const r = Array.from({ length: N }, (_, k) => shardRange(n, { index: k, count: N }));
      expect(r[0].start).toBe(0);
      expect(r[N - 1].end).toBe(n);
      for (let k = 1; k < N; k++) expect(r[k].start).toBe(r[k - 1].end);
    }
  });
});

describe("cellfm tokenize --threads / --shard and cellfm merge", () => {
  it("worker threads give the one-thread dataset exactly", async () => {
    const d = tmpDir();
    const one = path.join(d, "one");
    const two = path.join(d, "two");
    await tokenizeToDataset({ input: tiny, output: one, modelVersion: "V2", carry: ["cell_type"], chunkSize: 16, threads: 1, quiet: true });
    await tokenizeToDataset({ input: tiny, output: two, modelVersion: "V2", carry: ["cell_type"], chunkSize: 16, threads: 2, quiet: true });
    sameDataset(one, two);
    const shardFile = (dir: string) => fs.readFileSync(path.join(dir, "shard-00000.arrow"));
    expect(shardFile(two).equals(shardFile(one))).toBe(true);
    // scGPT binning (seeded per cell) too
    const b1 = path.join(d, "b1");
    const b2 = path.join(d, "b2");
    await tokenizeToDataset({ input: tiny, output: b1, modelVersion: "V1", encoding: "binned", chunkSize: 16, threads: 1, quiet: true });
    await tokenizeToDataset({ input: tiny, output: b2, modelVersion: "V1", encoding: "binned", chunkSize: 16, threads: 2, quiet: true });
    expect(shardFile(b2).equals(shardFile(b1))).toBe(true);
  });

  it("the N shard outputs merge (given in any order) to exactly the unsharded dataset; incomplete sets are refused", async () => {
    const d = tmpDir();
    const whole = path.join(d, "whole");
    await main(["tokenize", "-i", tiny, "-o", whole, "--carry", "cell_type", "-q", "--chunk-size", "50"]);
    const parts = [0, 1, 2, 3].map((k) => path.join(d, `part-${k}`));
    for (const [k, p] of parts.entries()) {
      await main(["tokenize", "-i", tiny, "-o", p, "--carry", "cell_type", "-q", "--shard", `${k}/4`, "--threads", k === 1 ? "2" : "1", "--chunk-size", "32"]);
    }
    expect(readTokenizedDataset(parts[1]).manifest.shard).toEqual({ index: 1, count: 4 });
    expect(summary(parts[1]).shard).toMatchObject({ index: 1, count: 4, n_cells_input: 300 });
    const merged = path.join(d, "merged");
    await main(["merge", "-i", parts[3], parts[1], parts[0], parts[2], "-o", merged, "-q"]);
    sameDataset(whole, merged);
    expect(readTokenizedDataset(merged).manifest.shard).toBeUndefined();
    await expect(main(["merge", "-i", parts[0], parts[2], parts[3], "-o", path.join(d, "m2"), "-q"])).rejects.toThrow(/shards 1\/4 are missing/);
    await expect(main(["merge", "-i", parts[0], parts[0], "-o", path.join(d, "m3"), "-q"])).rejects.toThrow(/part-0 is given twice/); // the same folder twice is named as such (issue 20 §3)
    await expect(main(["merge", "-i", parts[0], whole, "-o", path.join(d, "m4"), "-q"])).rejects.toThrow(/non-shards/);
    await expect(main(["merge", "-i", parts[0], parts[1], parts[2], parts[3], "-o", merged, "-q"])).rejects.toThrow(/already exists/);
    expect(fs.existsSync(path.join(d, "m2"))).toBe(false);
  });
});
