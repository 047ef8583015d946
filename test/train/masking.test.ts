import { describe, expect, it } from "vitest";
import { makeRng } from "../../src/rng.js";
import { collateMlm } from "../../src/train/masking.js";
import { truncateCell } from "../../src/encoding/rank.js";

describe("MLM collator (HF DataCollatorForLanguageModeling)", () => {
  const V = 25426;
  it("pads right, builds the attention mask, never selects <pad> or <mask>", () => {
    const cells = [Int32Array.from([5, 6, 7, 8, 9]), Int32Array.from([10, 1, 11]), Int32Array.from([12])];
    const rng = makeRng(1);
    for (let rep = 0; rep < 200; rep++) {
      const b = collateMlm(cells, rng, { vocabSize: V, mlmProbability: 0.5 });
      expect(b.seqLen).toBe(5);
      expect(b.realTokens).toBe(9);
      expect(Array.from(b.attentionMask)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0]);
      for (const p of b.positions) {
        expect(b.attentionMask[p]).toBe(1);
        expect(p).not.toBe(6); // the <mask> already in cell 2
      }
      for (const p of [8, 9, 11, 12, 13, 14]) expect(b.inputIds[p]).toBe(0);
    }
  });

  it("selects ~15% and replaces 80/10/10 (mask/random/unchanged)", () => {
    const rng = makeRng(7);
    const cells: Int32Array[] = [];
    for (let c = 0; c < 40; c++) cells.push(Int32Array.from({ length: 2000 }, (_, i) => 2 + ((i * 7919 + c) % (V - 2))));
    const b = collateMlm(cells, rng, { vocabSize: V, mlmProbability: 0.15 });
    const n = 40 * 2000;
    const sel = b.positions.length;
    expect(Math.abs(sel / n - 0.15)).toBeLessThan(0.006);
    let masked = 0, same = 0, other = 0;
    for (let k = 0; k < sel; k++) {
      const id = b.inputIds[b.positions[k]];
      if (id === 1) masked++;
      else if (id === b.labels[k]) same++;
      else other++;
    }
    expect(Math.abs(masked / sel - 0.8)).toBeLessThan(0.015);
    expect(Math.abs(same / sel - 0.1)).toBeLessThan(0.01); // random can hit the label with prob 1/V only
    expect(Math.abs(other / sel - 0.1)).toBeLessThan(0.01);
    // labels are the original ids
    for (let k = 0; k < sel; k++) {
      const p = b.positions[k];
      expect(b.labels[k]).toBe(cells[Math.floor(p / 2000)][p % 2000]);
    }
    // unselected positions are untouched
    const selected = new Set(b.positions);
    for (let p = 0; p < 5000; p++) if (!selected.has(p)) expect(b.inputIds[p]).toBe(cells[Math.floor(p / 2000)][p % 2000]);
  });

  it("is reproducible from the seed and the saved generator state", () => {
    const cells = [Int32Array.from({ length: 300 }, (_, i) => 2 + i)];
    const r1 = makeRng(3);
    collateMlm(cells, r1, { vocabSize: V, mlmProbability: 0.15 });
    const st = r1.state();
    const a = collateMlm(cells, r1, { vocabSize: V, mlmProbability: 0.15 });
    const b = collateMlm(cells, makeRng(3, st), { vocabSize: V, mlmProbability: 0.15 });
    expect(Array.from(a.inputIds)).toEqual(Array.from(b.inputIds));
    expect(Array.from(a.positions)).toEqual(Array.from(b.positions));
  });

  it("selects V2 <cls>/<eos> like any gene, and keeps at least one position", () => {
    const rng = makeRng(11);
    let clsSelected = 0;
    for (let rep = 0; rep < 400; rep++) {
      const b = collateMlm([Int32Array.from([2, 100, 101, 3])], rng, { vocabSize: 20275, mlmProbability: 0.15 });
      expect(b.positions.length).toBeGreaterThan(0);
      if (b.positions.includes(0)) clsSelected++;
    }
    expect(clsSelected).toBeGreaterThan(20);
  });

  it("truncates keeping the top genes (and V2's <eos>)", () => {
    expect(Array.from(truncateCell(Int32Array.from([2, 9, 8, 7, 3]), 4, 3))).toEqual([2, 9, 8, 3]);
    expect(Array.from(truncateCell(Int32Array.from([9, 8, 7, 6]), 3))).toEqual([9, 8, 7]);
  });
});
