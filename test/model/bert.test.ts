import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { DropoutContext } from "../../src/model/ops.js";
import { countParameters, GENEFORMER_V1_6L, validateBertConfig } from "../../src/model/config.js";
import { attention, batchMatmul, gatherRows, linear, matmul2d, sparseSoftmaxCrossEntropy, tiedDecoder } from "../../src/model/ops.js";
import { makeBatch, maxAbsDiff, randomCells, TINY, useBackend } from "./helpers.js";

beforeAll(async () => {
  await useBackend("cpu");
});

describe("BertConfig", () => {
  it("accepts the Geneformer V1 6L preset and counts its ~10.3M parameters", () => {
    const c = validateBertConfig({ ...GENEFORMER_V1_6L });
    expect(c.num_hidden_layers).toBe(6);
    expect(countParameters(c) / 1e6).toBeCloseTo(10.3, 0);
  });
  it("names the field in errors", () => {
    expect(() => validateBertConfig({ ...TINY, num_attention_heads: 3 })).toThrow(
      "hidden_size (32) must be divisible by num_attention_heads (3)",
    );
    expect(() => validateBertConfig({ ...TINY, hidden_act: "tanh" })).toThrow(/hidden_act/);
    const { vocab_size: _v, ...noVocab } = TINY;
    expect(() => validateBertConfig(noVocab)).toThrow(/vocab_size/);
    expect(() => validateBertConfig({ ...TINY, hidden_dropout_prob: 1.5 })).toThrow(/hidden_dropout_prob/);
  });
});

describe("BertForMaskedLM", () => {
  it("has HF weight names, counted parameters, and outputs [batch, seqLen, hidden]", () => {
    const m = new BertForMaskedLM(TINY, { seed: 1 });
    expect(m.weights.has("bert.encoder.layer.1.attention.self.query.weight")).toBe(true);
    expect(m.weights.has("cls.predictions.transform.LayerNorm.bias")).toBe(true);
    expect(m.hfShape("bert.encoder.layer.0.intermediate.dense.weight")).toEqual([64, 32]); // [out, in]
    expect(m.numParameters).toBe(countParameters(TINY));
    const b = makeBatch([[5, 6, 7, 8, 9], [10, 11]]);
    const n0 = tf.memory().numTensors;
    const out = m.forward(b, { training: false, outputHiddenStates: true });
    expect(out.lastHiddenState.shape).toEqual([2, 5, 32]);
    expect(out.hiddenStates!.length).toBe(3);
    expect(maxAbsDiff(out.hiddenStates![2].dataSync(), out.lastHiddenState.dataSync())).toBe(0);
    tf.dispose([out.lastHiddenState, ...out.hiddenStates!]);
    expect(tf.memory().numTensors).toBe(n0);
    const r = m.lossAndGrads(b, { positions: new Int32Array([1, 6]), labels: new Int32Array([6, 11]) }, { training: true, dropoutSeed: 1 });
    expect(r.loss).toBeGreaterThan(0);
    expect(Math.abs(r.loss - Math.log(200))).toBeLessThan(0.5); // near-uniform predictions at init
    expect([...r.grads.keys()].sort()).toEqual([...m.weights.keys()].sort());
    tf.dispose([...r.grads.values()]);
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([b.inputIds, b.attentionMask]);
    m.dispose();
  });

  it("is invariant to padding and to the other cells in the batch", () => {
    const m = new BertForMaskedLM(TINY, { seed: 2 });
    const cells = randomCells(3, 4, 20, 200, 7);
    const batch = makeBatch(cells, 24);
    const all = m.forward(batch, { training: false });
    for (let c = 0; c < cells.length; c++) {
      const alone = makeBatch([cells[c]]);
      const a = m.forward(alone, { training: false }).lastHiddenState;
      const inBatch = tf.slice(all.lastHiddenState, [c, 0, 0], [1, cells[c].length, 32]);
      expect(maxAbsDiff(a.dataSync(), inBatch.dataSync())).toBeLessThan(1e-5);
      tf.dispose([a, inBatch, alone.inputIds, alone.attentionMask]);
    }
    tf.dispose([all.lastHiddenState, batch.inputIds, batch.attentionMask]);
    m.dispose();
  });

  it("reproduces dropout from dropoutSeed", () => {
    const m = new BertForMaskedLM(TINY, { seed: 3 });
    const b = makeBatch(randomCells(2, 10, 16, 200, 3));
    const t = { positions: new Int32Array([0, 3, 17]), labels: new Int32Array([4, 5, 6]) };
    const l = (s: number | undefined, training = true) => {
      const x = m.mlmLoss(b, t, { training, dropoutSeed: s });
      const v = x.dataSync()[0];
      x.dispose();
      return v;
    };
    expect(l(5)).toBe(l(5));
    expect(l(5)).not.toBe(l(6));
    expect(l(5, false)).toBe(l(6, false));
    m.dispose();
  });

  it("gradients match finite differences (relu and gelu)", () => {
    for (const act of ["relu", "gelu"] as const) {
      const m = new BertForMaskedLM({ ...TINY, hidden_act: act, vocab_size: 40 }, { seed: 4 });
      const b = makeBatch([[5, 6, 7, 8, 9, 10], [11, 12, 13]]);
      const t = { positions: new Int32Array([1, 4, 7]), labels: new Int32Array([6, 9, 12]) };
      const { grads } = m.lossAndGrads(b, t, { training: false });
      const lossAt = () => {
        const x = m.mlmLoss(b, t, { training: false });
        const v = x.dataSync()[0];
        x.dispose();
        return v;
      };
      const probes: [string, number][] = [
        ["bert.embeddings.word_embeddings.weight", 6 * 32 + 3],
        ["bert.embeddings.position_embeddings.weight", 2 * 32 + 5],
        ["bert.encoder.layer.0.attention.self.query.weight", 37],
        ["bert.encoder.layer.0.attention.self.key.weight", 101],
        ["bert.encoder.layer.1.attention.self.value.weight", 200],
        ["bert.encoder.layer.1.intermediate.dense.weight", 77],
        ["bert.encoder.layer.1.output.LayerNorm.weight", 3],
        ["cls.predictions.transform.dense.weight", 10],
        ["cls.predictions.bias", 9],
      ];
      for (const [name, idx] of probes) {
        const v = m.weights.get(name)!;
        const orig = v.dataSync().slice();
        const eps = 1e-3;
        const set = (d: number) => {
          const w = orig.slice();
          w[idx] += d;
          v.assign(tf.tensor(w, v.shape));
        };
        set(eps);
        const up = lossAt();
        set(-eps);
        const down = lossAt();
        v.assign(tf.tensor(orig, v.shape));
        const fd = (up - down) / (2 * eps);
        const g = grads.get(name)!.dataSync()[idx];
        expect(Math.abs(fd - g), `${act} ${name}[${idx}] fd=${fd} grad=${g}`).toBeLessThan(2e-3 + 0.05 * Math.abs(g));
      }
      tf.dispose([...grads.values(), b.inputIds, b.attentionMask]);
      m.dispose();
    }
  });

  it("runs on wasm with the same results as cpu (forward < 1e-4, loss, grads)", async () => {
    const cells = randomCells(3, 5, 30, 200, 11);
    const t = { positions: new Int32Array([0, 2, 31, 40, 65]), labels: new Int32Array([3, 4, 5, 6, 7]) };
    const run = async (be: "cpu" | "wasm") => {
      await useBackend(be);
      const m = new BertForMaskedLM({ ...TINY, hidden_act: "gelu" }, { seed: 5 });
      const b = makeBatch(cells);
      const n0 = tf.memory().numTensors;
      const h = m.forward(b, { training: false }).lastHiddenState;
      const hv = h.dataSync().slice();
      h.dispose();
      const r = m.lossAndGrads(b, t, { training: true, dropoutSeed: 9 });
      const g = r.grads.get("bert.encoder.layer.0.attention.self.key.weight")!.dataSync().slice();
      const ge = r.grads.get("bert.embeddings.word_embeddings.weight")!.dataSync().slice();
      tf.dispose([...r.grads.values()]);
      const leaked = tf.memory().numTensors - n0;
      tf.dispose([b.inputIds, b.attentionMask]);
      m.dispose();
      return { hv, loss: r.loss, g, ge, leaked };
    };
    const c = await run("cpu");
    const w = await run("wasm");
    await useBackend("cpu");
    expect(w.leaked).toBe(0);
    expect(maxAbsDiff(c.hv, w.hv)).toBeLessThan(1e-4);
    expect(Math.abs(c.loss - w.loss)).toBeLessThan(1e-4);
    expect(maxAbsDiff(c.g, w.g)).toBeLessThan(1e-4);
    expect(maxAbsDiff(c.ge, w.ge)).toBeLessThan(1e-4);
  });
});

describe("encoder layer op", () => {
  it("matches the tfjs-composed layer in value and in every weight gradient", () => {
    for (const act of ["relu", "gelu"] as const) {
      const m = new BertForMaskedLM({ ...TINY, hidden_act: act }, { seed: 6 });
      const layer = m.layers[0];
      const x = tf.randomNormal([2 * 6, 32], 0, 1, "float32", 2) as tf.Tensor2D;
      const maskArr = new Float32Array(12).fill(1);
      maskArr[10] = maskArr[11] = 0;
      const bias = tf.reshape(tf.mul(tf.sub(1, tf.tensor2d(maskArr, [2, 6])), -1e9), [2, 1, 1, 6]) as tf.Tensor4D;
      const r = tf.randomNormal([12, 32], 0, 1, "float32", 3);
      const ctx = () => ({ config: m.config, dropout: new DropoutContext(false) });
      const vars = Object.values(layer.w);
      const run = (f: () => tf.Tensor2D) => tf.variableGrads(() => tf.sum(tf.mul(f(), r)) as tf.Scalar, vars);
      const a = run(() => layer.forward(x, bias, 2, 6, ctx()));
      const b = run(() => layer.forwardComposite(x, bias, 2, 6, ctx()));
      expect(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0])).toBeLessThan(1e-3);
      for (const k of Object.keys(a.grads)) {
        expect(maxAbsDiff(a.grads[k].dataSync(), b.grads[k].dataSync()), `${act} ${k}`).toBeLessThan(1e-3);
      }
      tf.dispose([x, bias, r, a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads)]);
      m.dispose();
    }
  });
});

describe("fast ops", () => {
  it("matmul2d, linear, gatherRows and cross-entropy gradients match finite differences", () => {
    const x = tf.randomNormal([5, 4], 0, 1, "float32", 1) as tf.Tensor2D;
    const w = tf.randomNormal([4, 3], 0, 1, "float32", 2) as tf.Tensor2D;
    const bias = tf.randomNormal([3], 0, 1, "float32", 3) as tf.Tensor1D;
    const r = tf.randomNormal([5, 3], 0, 1, "float32", 4);
    const idx = tf.tensor1d([2, 0, 2, 4], "int32");
    const labels = tf.tensor1d([0, 2, 1, 1, 0], "int32");
    const fns: [string, (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Scalar][] = [
      ["matmul2d", (a, b) => tf.sum(tf.mul(matmul2d(a, b), r))],
      ["linear relu", (a, b) => tf.sum(tf.mul(linear(a, b, bias, "relu"), r))],
      ["linear gelu", (a, b) => tf.sum(tf.mul(linear(a, b, bias, "gelu"), r))],
      ["gather", (a, b) => tf.sum(tf.mul(matmul2d(gatherRows(a, idx), b), tf.slice(r, [0, 0], [4, 3])))],
      ["cross-entropy", (a, b) => sparseSoftmaxCrossEntropy(matmul2d(a, b), labels)],
      ["tied decoder", (a, b) => tf.sum(tf.mul(tiedDecoder(a, tf.transpose(b) as tf.Tensor2D, bias), r))],
      ["batchMatmul", (a, b) => tf.sum(tf.mul(batchMatmul(tf.reshape(a, [1, 5, 4]), tf.reshape(b, [1, 4, 3])), r))],
      [
        "attention",
        (a, b) => {
          // q [2 heads, 5, 2], kT [2, 2, 5], v [2, 5, 2]; padding on the last key
          const q = tf.reshape(tf.transpose(tf.reshape(a, [5, 2, 2]), [1, 0, 2]), [2, 5, 2]) as tf.Tensor3D;
          const kT = tf.reshape(tf.transpose(tf.reshape(a, [5, 2, 2]), [1, 2, 0]), [2, 2, 5]) as tf.Tensor3D;
          const mix = tf.randomNormal([10, 4], 0, 1, "float32", 8) as tf.Tensor2D;
          const v5 = tf.reshape(tf.slice(matmul2d(mix, b), [0, 0], [10, 2]), [2, 5, 2]) as tf.Tensor3D;
          const bias4 = tf.tensor4d([0, 0, 0, 0, -1e9], [1, 1, 1, 5]);
          return tf.sum(tf.mul(attention(q, kT, v5, bias4, { rate: 0.3, seed: 4 }), tf.reshape(tf.slice(r, [0, 0], [5, 2]), [1, 5, 2])));
        },
      ],
    ];
    for (const [name, f] of fns) {
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a as tf.Tensor2D, b as tf.Tensor2D))([x, w]);
      for (const [k, t] of [[0, x], [1, w]] as [number, tf.Tensor2D][]) {
        const base = t.dataSync();
        const gd = g[k].dataSync();
        for (let i = 0; i < base.length; i += 3) {
          const eval1 = (d: number) => {
            const p = base.slice();
            p[i] += d;
            const pt = tf.tensor2d(p, t.shape);
            const v = k === 0 ? f(pt, w) : f(x, pt);
            const out = v.dataSync()[0];
            tf.dispose([pt, v]);
            return out;
          };
          const fd = (eval1(1e-2) - eval1(-1e-2)) / 2e-2;
          expect(Math.abs(fd - gd[i]), `${name} d/d${k}[${i}]`).toBeLessThan(3e-3 + 0.02 * Math.abs(gd[i]));
        }
      }
      tf.dispose(g);
    }
  });
});
