import { describe, expect, it } from "vitest";
import { makeRng } from "../../src/rng.js";
import { cellSamplingRng, sampleGenes } from "../../src/encoding/gene-set.js";

const range = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);

describe("sampleGenes (fixed max_length)", () => {
  it("keeps every expressed gene when there are fewer than max_length (no padding)", () => {
    const ids = Int32Array.of(4, 9, 30);
    const vals = Float32Array.of(1, 5, 2);
    const s = sampleGenes(ids, vals, { maxLength: 8 }, makeRng(1));
    expect([Array.from(s.ids), Array.from(s.values), s.nExpressed]).toEqual([[4, 9, 30], [1, 5, 2], 3]);
  });

  it("takes a uniform subset without replacement, values aligned, in stored order", () => {
    const ids = range(100, 120); // 20 expressed genes, value = id / 10
    const vals = Float32Array.from(ids, (t) => t / 10);
    const rng = makeRng(2);
    const hits = new Float64Array(20);
    const N = 20_000;
    let bad = 0;
    for (let r = 0; r < N; r++) {
      const s = sampleGenes(ids, vals, { maxLength: 5 }, rng);
      if (s.ids.length !== 5) bad++;
      for (let i = 0; i < 5; i++) {
        if (i > 0 && !(s.ids[i] > s.ids[i - 1])) bad++;
        if (Math.abs(s.values[i] - s.ids[i] / 10) > 1e-5) bad++;
        hits[s.ids[i] - 100]++;
      }
    }
    expect(bad).toBe(0);
    // each gene is in the subset with probability 5/20
    const se = Math.sqrt((0.25 * 0.75) / N);
    for (const h of hits) expect(Math.abs(h / N - 0.25)).toBeLessThan(4.5 * se);
  });

  for (const poolSize of [5000, 40]) {
    it(`pads with distinct unexpressed pool genes of value 0 (pool of ${poolSize}: ${poolSize > 100 ? "rejection" : "candidate list"} path)`, () => {
      const pool = range(10, 10 + poolSize);
      const ids = Int32Array.of(12, 15, 33);
      const vals = Float32Array.of(3, 1, 7);
      const rng = makeRng(3);
      const counts = new Map<number, number>();
      const N = 4000;
      const problems = new Set<string>();
      for (let r = 0; r < N; r++) {
        const s = sampleGenes(ids, vals, { maxLength: 20, padWithUnexpressed: true, pool }, rng);
        if (s.ids.length !== 20 || s.nExpressed !== 3) problems.add("length");
        if (s.ids.subarray(0, 3).join() !== "12,15,33" || s.values.subarray(0, 3).join() !== "3,1,7") problems.add("expressed part changed");
        const pad = Array.from(s.ids.subarray(3));
        for (let i = 0; i < pad.length; i++) {
          if (pad[i] < 10 || pad[i] >= 10 + poolSize) problems.add("outside the pool");
          if (pad[i] === 12 || pad[i] === 15 || pad[i] === 33) problems.add("expressed gene used as padding");
          if (i > 0 && !(pad[i] > pad[i - 1])) problems.add("padding not distinct ascending");
          if (s.values[3 + i] !== 0) problems.add("padding value not 0");
          counts.set(pad[i], (counts.get(pad[i]) ?? 0) + 1);
        }
      }
      expect([...problems]).toEqual([]);
      if (poolSize === 40) {
        // 37 candidates, 17 drawn: each with probability 17/37
        const p = 17 / 37;
        const se = Math.sqrt((p * (1 - p)) / N);
        for (const c of counts.values()) expect(Math.abs(c / N - p)).toBeLessThan(4.5 * se);
      }
    });
  }

  it("stops padding when the pool runs out, and refuses bad options", () => {
    const s = sampleGenes(Int32Array.of(1, 2), Float32Array.of(1, 1), { maxLength: 10, padWithUnexpressed: true, pool: Int32Array.of(1, 2, 3, 4) }, makeRng(1));
    expect(Array.from(s.ids)).toEqual([1, 2, 3, 4]);
    expect(() => sampleGenes(Int32Array.of(1), Float32Array.of(1), { maxLength: 0 }, makeRng(1))).toThrow(/max_length must be a positive integer/);
    expect(() => sampleGenes(Int32Array.of(1), Float32Array.of(1), { maxLength: 4, padWithUnexpressed: true }, makeRng(1))).toThrow(/needs the pool/);
    expect(() => sampleGenes(Int32Array.of(1, 2), Float32Array.of(1), { maxLength: 4 }, makeRng(1))).toThrow(/2 ids but 1 values/);
  });

  it("the embedding generator depends on the seed and the cell id only", () => {
    const ids = range(0, 50);
    const vals = new Float32Array(50).fill(1);
    const a = sampleGenes(ids, vals, { maxLength: 10 }, cellSamplingRng(0, "cellA"));
    const b = sampleGenes(ids, vals, { maxLength: 10 }, cellSamplingRng(0, "cellA"));
    const c = sampleGenes(ids, vals, { maxLength: 10 }, cellSamplingRng(0, "cellB"));
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    expect(Array.from(a.ids)).not.toEqual(Array.from(c.ids));
  });
});
