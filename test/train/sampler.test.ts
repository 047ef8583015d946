import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { makeRng } from "../../src/rng.js";
import { BatchStream, epochBatches, lengthGroupedIndices } from "../../src/train/sampler.js";

function realLengths(): Int32Array {
  // lengths of the golden-tokenized tiny.h5ad cells (real PBMC cells)
  const lines = fs.readFileSync("test/fixtures/golden/tiny.v1.jsonl", "utf8").trim().split("\n");
  return Int32Array.from(lines.map((l) => JSON.parse(l).length as number));
}

describe("length-grouped sampler", () => {
  const lengths = realLengths();

  it("covers every cell exactly once per epoch and groups by length", () => {
    for (const epoch of [0, 1]) {
      const batches = epochBatches(lengths, epoch, { batchSize: 8, seed: 5 });
      const seen = new Int32Array(lengths.length);
      for (const b of batches) for (const i of b) seen[i]++;
      expect(Array.from(seen).every((x) => x === 1)).toBe(true);
      // padding waste is far below that of random batches
      let padded = 0, real = 0;
      for (const b of batches) {
        const ls = Array.from(b, (i) => lengths[i]);
        padded += Math.max(...ls) * ls.length;
        real += ls.reduce((a, x) => a + x, 0);
        // sorted longest first within a batch (HF swaps the overall longest cell to the very front,
        // so the first cell of a batch may be out of order)
        for (let k = 2; k < ls.length; k++) expect(ls[k]).toBeLessThanOrEqual(ls[k - 1]);
      }
      expect(real / padded).toBeGreaterThan(0.85);
    }
    // the first batch holds the longest cell (HF puts the biggest batch first)
    const b0 = epochBatches(lengths, 0, { batchSize: 8, seed: 5 })[0];
    expect(lengths[b0[0]]).toBe(Math.max(...lengths));
  });

  it("respects the token bound", () => {
    const maxTok = 2048;
    const batches = epochBatches(lengths, 0, { batchSize: 16, maxTokensPerBatch: maxTok, seed: 1 });
    let n = 0;
    for (const b of batches) {
      const m = Math.max(...Array.from(b, (i) => lengths[i]));
      expect(m * b.length).toBeLessThanOrEqual(maxTok);
      expect(b.length).toBeLessThanOrEqual(16);
      n += b.length;
    }
    expect(n).toBe(lengths.length);
    expect(() => epochBatches(Int32Array.from([10, 5000]), 0, { batchSize: 2, maxTokensPerBatch: 100, seed: 1 })).toThrow(/max_tokens_per_batch/);
  });

  it("matches HF's mega-batch rule on a hand-checkable case", () => {
    // 8 cells, batch 2 -> mult = min(8/8, 50) = 1 -> mega-batches of 2 cells
    const ls = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const order = lengthGroupedIndices(ls, 2, makeRng(0));
    const pairs = [0, 2, 4, 6].map((s) => [ls[order[s]], ls[order[s + 1]]]);
    expect(pairs[0][0]).toBe(8);
    for (const [a, b] of pairs.slice(1)) expect(a).toBeGreaterThanOrEqual(b);
  });

  it("is deterministic per (seed, epoch) and resumes from a position", () => {
    const opts = { batchSize: 8, seed: 9 };
    const s1 = new BatchStream(lengths, opts);
    const all: number[][] = [];
    for (let k = 0; k < 60; k++) all.push(Array.from(s1.next()));
    const s2 = new BatchStream(lengths, opts);
    for (let k = 0; k < 25; k++) s2.next();
    const pos = s2.position();
    const s3 = new BatchStream(lengths, opts, pos);
    for (let k = 25; k < 60; k++) expect(Array.from(s3.next())).toEqual(all[k]);
    expect(s1.position().epoch).toBe(1); // 300 cells / 8 = 38 batches per epoch
    expect(epochBatches(lengths, 0, opts)[3]).not.toEqual(epochBatches(lengths, 1, opts)[3]);
  });
});
