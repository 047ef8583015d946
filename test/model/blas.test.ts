/**
 * The native sgemm kernels (src/blas.ts) against tfjs' reference kernels (tfjs-backend-cpu) in every
 * transpose/broadcast/bias/activation case they take: same numbers within float32 rounding (1e-5 of
 * the output's largest magnitude; the BLAS sums in another order). The wasm kernels are compared
 * too, except where they are wrong (`wasmWrong`: their fused path adds the bias and clamps the
 * relu once per 48-wide block of the inner dimension when a transpose or a batch is involved, and
 * XNNPACK refuses a one-element bias). Where the native piece is not built (no BLAS at install) the
 * wasm kernels must stay in place; a line says so.
 */
import { describe, expect, it, beforeAll } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import "@tensorflow/tfjs-backend-cpu";
import { installBlasKernels, missingNativeFunctions, nativeBlas } from "../../src/blas.js";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { layerNorm, layerNormFwd, maskedSoftmax } from "../../src/model/ops.js";
import { makeBatch, maxAbsDiff, randomCells, TINY } from "./helpers.js";

const have = nativeBlas() !== null;
if (!have) console.log("blas.test: native BLAS kernels not built; testing only the fallback");

function rnd(shape: number[], seed: number): tf.Tensor {
  let s = seed >>> 0;
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 32 - 0.5;
  }
  return tf.tensor(v, shape);
}

type Case = { name: string; run: () => tf.Tensor; wasmWrong: boolean };
const CASES: Case[] = [];
const add = (name: string, run: () => tf.Tensor, wasmWrong = false) => CASES.push({ name, run, wasmWrong });
for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
  add(`2-D 37x53·53x29 tA=${ta} tB=${tb}`, () =>
    tf.matMul(rnd(ta ? [53, 37] : [37, 53], 1), rnd(tb ? [29, 53] : [53, 29], 2), ta, tb));
  add(`3-D batch 3 tA=${ta} tB=${tb}`, () =>
    tf.matMul(rnd(ta ? [3, 20, 11] : [3, 11, 20], 3), rnd(tb ? [3, 7, 20] : [3, 20, 7], 4), ta, tb));
  add(`fused bias relu tA=${ta} tB=${tb}`, () =>
    tf.fused.matMul({ a: rnd(ta ? [64, 33] : [33, 64], 5) as tf.Tensor2D, b: rnd(tb ? [70, 64] : [64, 70], 6) as tf.Tensor2D,
      transposeA: ta, transposeB: tb, bias: rnd([70], 7), activation: "relu" }), ta || tb);
}
add("4-D batch [2,3]", () => tf.matMul(rnd([2, 3, 5, 6], 8), rnd([2, 3, 6, 4], 9)));
add("broadcast b batch 1", () => tf.matMul(rnd([4, 5, 6], 10), rnd([1, 6, 3], 11)));
add("broadcast a 2-D over b 3-D", () => tf.matMul(rnd([5, 6], 12), rnd([4, 6, 3], 13)));
add("broadcast [3,1] x [1,2] batch (delegated)", () => tf.matMul(rnd([3, 1, 4, 5], 14), rnd([1, 2, 5, 2], 15)));
add("fused linear, bias", () => tf.fused.matMul({ a: rnd([9, 130], 16) as tf.Tensor2D, b: rnd([130, 17], 17) as tf.Tensor2D, bias: rnd([17], 18) }));
add("fused scalar bias relu6", () =>
  tf.fused.matMul({ a: tf.mul(rnd([8, 12], 19), 20) as tf.Tensor2D, b: rnd([12, 5], 20) as tf.Tensor2D, bias: rnd([1], 21), activation: "relu6" }), true);
add("fused no bias", () => tf.fused.matMul({ a: rnd([6, 4], 22) as tf.Tensor2D, b: rnd([4, 3], 23) as tf.Tensor2D }));
add("model shape 2048x256·256x1024", () => tf.matMul(rnd([2048, 256], 24), rnd([256, 1024], 25)));
// the other native kernels (softmax, masked softmax, LayerNorm, row gather): through the model's own
// ops, which run them on the native piece and compose tfjs ops elsewhere (cpu, and wasm before install)
const maskOf = (B: number, L: number, pad: number[]) =>
  tf.tensor4d(Array.from({ length: B * L }, (_, i) => (pad[Math.floor(i / L)] > i % L ? 0 : i % L < L - pad[Math.floor(i / L)] ? 0 : -1e9)), [B, 1, 1, L]);
add("softmax [3, 70] x 8", () => tf.softmax(tf.mul(rnd([3, 70], 27), 8)));
add("softmax [2, 5, 1]", () => tf.softmax(rnd([2, 5, 1], 28)));
add("softmax large logits", () => tf.softmax(tf.mul(rnd([4, 33], 29), 400)));
add("masked softmax [2,3,9,9], padding", () => maskedSoftmax(tf.mul(rnd([2, 3, 9, 9], 30), 6) as tf.Tensor4D, maskOf(2, 9, [0, 4]) as tf.Tensor4D));
add("masked softmax [1,1,4,300], no padding", () => maskedSoftmax(rnd([1, 1, 4, 300], 31) as tf.Tensor4D, tf.zeros([1, 1, 1, 300]) as tf.Tensor4D));
for (const res of [false, true]) {
  add(`layer norm fwd [37, 48] residual=${res}`, () => {
    const r = layerNormFwd(tf.add(rnd([37, 48], 32), 3) as tf.Tensor2D, rnd([48], 33), rnd([48], 34), 1e-12, res ? (rnd([37, 48], 35) as tf.Tensor2D) : undefined);
    return tf.concat([tf.reshape(r.y, [-1]), tf.reshape(r.xhat, [-1]), tf.reshape(r.rstd, [-1])]);
  });
}
add("layer norm [5, 256], eps 1e-5", () => layerNorm(rnd([5, 256], 36) as tf.Tensor2D, rnd([256], 37) as tf.Tensor1D, rnd([256], 38) as tf.Tensor1D, 1e-5));
add("gather rows [50, 7] at 9 indices", () => tf.gather(rnd([50, 7], 39), tf.tensor1d([3, 0, 49, 3, 17, 8, 8, 1, 22], "int32")));
add("gather 1-D", () => tf.gather(rnd([30], 40), tf.tensor2d([[5, 29], [0, 5]], [2, 2], "int32")));
add("gather axis 1 (delegated)", () => tf.gather(rnd([4, 6, 3], 41), tf.tensor1d([5, 0, 2], "int32"), 1));
add("inner dim 0", () => tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4])), true); // wasm leaves the output unwritten (whatever the heap held)
add("empty output", () => tf.matMul(tf.zeros([0, 5]), rnd([5, 4], 26)));

function evalAll(): { shape: number[]; values: Float32Array }[] {
  return CASES.map((c) => {
    const t = tf.tidy(c.run);
    const r = { shape: t.shape, values: t.dataSync() as Float32Array };
    t.dispose();
    return r;
  });
}

function expectClose(mine: ReturnType<typeof evalAll>, ref: ReturnType<typeof evalAll>, what: string, skip: (c: Case) => boolean) {
  CASES.forEach((c, i) => {
    if (skip(c)) return;
    expect(mine[i].shape, c.name).toEqual(ref[i].shape);
    const a = mine[i].values, b = ref[i].values;
    let scale = 0;
    for (const x of b) scale = Math.max(scale, Math.abs(x));
    for (let j = 0; j < a.length; j++) {
      if (!(Math.abs(a[j] - b[j]) <= 1e-5 * Math.max(1, scale))) throw new Error(`${c.name}: element ${j} ${a[j]} vs ${what} ${b[j]}`);
    }
  });
}

describe("native BLAS matmul, softmax, LayerNorm and gather kernels", () => {
  let cpu: ReturnType<typeof evalAll>, wasm: ReturnType<typeof evalAll>;
  beforeAll(async () => {
    await tf.setBackend("cpu");
    cpu = evalAll();
    await tf.setBackend("wasm");
    await tf.ready();
    wasm = evalAll();
  });

  it("match tfjs' reference kernels in every case, and the wasm kernels where those are right", () => {
    const s = installBlasKernels(tf);
    expect(s.active).toBe(have);
    if (!have) expect(s.reason).toMatch(/not built|CELLFM_BLAS/);
    const mine = evalAll();
    // without the native piece the wasm kernels stay, bugs included
    expectClose(mine, cpu, "cpu", (c) => !have && c.wasmWrong);
    expectClose(mine, wasm, "wasm", (c) => c.wasmWrong);
  });

  it("reject an out-of-range gather index and a mask that does not broadcast, as the stock kernels do", () => {
    expect(() => tf.gather(rnd([5, 2], 42), tf.tensor1d([5], "int32"))).toThrow(/index value 5 is not in \[0, 4\]/);
    if (have) expect(() => maskedSoftmax(rnd([2, 2, 3, 3], 43) as tf.Tensor4D, tf.zeros([5, 1, 1, 3]) as tf.Tensor4D)).toThrow(/does not broadcast/);
  });

  it("give the model's forward pass, loss and every gradient as the cpu backend does (relu, gelu)", async () => {
    // runs after the test above: on wasm the native kernels are installed where built, and the
    // model's ops then pass transposes and batches to them (src/model/ops.ts `mm`)
    const cells = randomCells(3, 5, 30, 200, 11);
    const t = { positions: new Int32Array([0, 2, 31, 40, 65]), labels: new Int32Array([3, 4, 5, 6, 7]) };
    for (const act of ["relu", "gelu"] as const) {
      const run = async (be: "cpu" | "wasm") => {
        await tf.setBackend(be);
        const m = new BertForMaskedLM({ ...TINY, hidden_act: act }, { seed: 5 });
        const b = makeBatch(cells);
        const n0 = tf.memory().numTensors;
        const h = m.forward(b, { training: false }).lastHiddenState;
        const hv = h.dataSync().slice();
        h.dispose();
        const r = m.lossAndGrads(b, t, { training: true, dropoutSeed: 9 });
        const grads = new Map([...r.grads].map(([k, g]) => [k, g.dataSync().slice() as Float32Array]));
        tf.dispose([...r.grads.values()]);
        const leaked = tf.memory().numTensors - n0;
        tf.dispose([b.inputIds, b.attentionMask]);
        m.dispose();
        return { hv, loss: r.loss, grads, leaked };
      };
      const c = await run("cpu");
      const w = await run("wasm");
      if (have && act === "relu") {
        // the comparison above ran the native attention, softmax and LayerNorm kernels, both directions
        const m = new BertForMaskedLM({ ...TINY, hidden_act: act }, { seed: 5 });
        const b = makeBatch(cells);
        const prof = await tf.profile(() => {
          const r = m.lossAndGrads(b, t, { training: true, dropoutSeed: 9 });
          tf.dispose([...r.grads.values()]);
        });
        tf.dispose([b.inputIds, b.attentionMask]);
        m.dispose();
        const ran = new Set(prof.kernels.map((k) => k.name));
        for (const k of ["CellfmAttention", "CellfmAttentionGrad", "CellfmLayerNorm", "Softmax"]) expect(ran.has(k), k).toBe(true);
        expect(ran.has("Transpose")).toBe(false);
      }
      expect(w.leaked).toBe(0);
      expect(maxAbsDiff(c.hv, w.hv)).toBeLessThan(1e-4);
      expect(Math.abs(c.loss - w.loss)).toBeLessThan(1e-4);
      expect([...w.grads.keys()]).toEqual([...c.grads.keys()]);
      for (const [k, g] of c.grads) expect(maxAbsDiff(g, w.grads.get(k)!), `${act} ${k}`).toBeLessThan(1e-4);
    }
  });
});

describe("a native module built by an older cellfm", () => {
  it("is recognised by the kernels it lacks (then matmuls run on plain wasm with a rebuild hint)", () => {
    const old = { sgemm() {}, threads() {}, config: "OpenBLAS" };
    expect(missingNativeFunctions(old)).toEqual(["softmax", "layernorm", "attention", "attention_backward"]);
    const m = nativeBlas();
    if (m) expect(missingNativeFunctions(m)).toEqual([]);
  });
});
