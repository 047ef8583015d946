import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { type CellfmMeta, readCheckpoint, writeCheckpoint } from "../../src/model/checkpoint.js";
import { readSafetensors, writeSafetensors } from "../../src/model/safetensors.js";
import { DropoutContext } from "../../src/model/ops.js";
import { makeBatch, maxAbsDiff, TINY, useBackend } from "./helpers.js";

let dir: string;
beforeAll(async () => {
  await useBackend("cpu");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-ckpt-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const META: CellfmMeta = {
  encoding: "geneformer-rank-value",
  objective: "mlm",
  model_version: "V1",
  dictionary: { name: "gc30M", sha256: "abc" },
  backend: "cpu",
  cellfm_version: "0.1.0",
  created: "2026-01-01T00:00:00Z",
  genes: 3,
};

describe("safetensors", () => {
  it("round-trips F32/I32/I64 tensors and metadata, 8-byte aligned header", () => {
    const f = path.join(dir, "a.safetensors");
    writeSafetensors(
      f,
      {
        w: { dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6.5]) },
        i: { dtype: "I32", shape: [3], data: new Int32Array([-1, 0, 7]) },
        l: { dtype: "I64", shape: [2], data: new BigInt64Array([1n, 2n ** 40n]) },
      },
      { format: "pt" },
    );
    const buf = fs.readFileSync(f);
    expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    const r = readSafetensors(f);
    expect(r.metadata).toEqual({ format: "pt" });
    expect(r.tensors.w.shape).toEqual([2, 3]);
    expect([...(r.tensors.w.data as Float32Array)]).toEqual([1, 2, 3, 4, 5, 6.5]);
    expect([...(r.tensors.i.data as Int32Array)]).toEqual([-1, 0, 7]);
    expect((r.tensors.l.data as BigInt64Array)[1]).toBe(2n ** 40n);
  });

  it("gives clear errors for truncated and corrupt files", () => {
    const f = path.join(dir, "b.safetensors");
    writeSafetensors(f, { w: { dtype: "F32", shape: [4], data: new Float32Array(4) } });
    const good = fs.readFileSync(f);
    const t1 = path.join(dir, "trunc.safetensors");
    fs.writeFileSync(t1, good.subarray(0, good.length - 4));
    expect(() => readSafetensors(t1)).toThrow(/trunc\.safetensors.*truncated/);
    const t2 = path.join(dir, "short.safetensors");
    fs.writeFileSync(t2, good.subarray(0, 20));
    expect(() => readSafetensors(t2)).toThrow(/short\.safetensors.*header length/);
    const t3 = path.join(dir, "json.safetensors");
    const bad = Buffer.from(good);
    bad[9] = 0x7b; // '{{' → invalid JSON
    fs.writeFileSync(t3, bad);
    expect(() => readSafetensors(t3)).toThrow(/json\.safetensors.*not JSON/);
    expect(() => readSafetensors(path.join(dir, "none.safetensors"))).toThrow(/not found/);
    expect(() => writeSafetensors(path.join(dir, "x.safetensors"), { w: { dtype: "F32", shape: [3], data: new Float32Array(4) } })).toThrow(
      /tensor w/,
    );
  });
});

describe("checkpoint", () => {
  it("round-trips a model (same outputs), optimizer and trainer state; HF layout on disk", () => {
    const m = new BertForMaskedLM(TINY, { seed: 7 });
    const ck = path.join(dir, "ck1");
    const opt = { "m/cls.predictions.bias": tf.ones([200]), step: tf.scalar(3, "int32") };
    writeCheckpoint(ck, { model: m, cellfm: META, optimizerState: opt, trainerState: { step: 3, rng: { s: 1 } } });
    expect(fs.readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
    const cfg = JSON.parse(fs.readFileSync(path.join(ck, "config.json"), "utf8"));
    expect(cfg.architectures).toEqual(["BertForMaskedLM"]);
    expect(cfg.model_type).toBe("bert");
    expect(cfg.hidden_size).toBe(32);
    expect(cfg.cellfm.dictionary.sha256).toBe("abc");
    const st = readSafetensors(path.join(ck, "model.safetensors"));
    expect(st.tensors["bert.encoder.layer.0.intermediate.dense.weight"].shape).toEqual([64, 32]);

    const r = readCheckpoint(ck);
    expect(r.cellfm.genes).toBe(3);
    expect(r.trainerState).toEqual({ step: 3, rng: { s: 1 } });
    expect(r.optimizerState!.step.dtype).toBe("int32");
    expect(r.optimizerState!["m/cls.predictions.bias"].dataSync()[5]).toBe(1);
    const b = makeBatch([[4, 5, 6, 7], [8, 9]]);
    const a = m.forward(b, { training: false }).lastHiddenState;
    const c = r.model.forward(b, { training: false }).lastHiddenState;
    expect(maxAbsDiff(a.dataSync(), c.dataSync())).toBe(0);
    const la = m.mlmLoss(b, { positions: new Int32Array([1]), labels: new Int32Array([5]) }, { training: false });
    const lc = r.model.mlmLoss(b, { positions: new Int32Array([1]), labels: new Int32Array([5]) }, { training: false });
    expect(lc.dataSync()[0]).toBe(la.dataSync()[0]);
    tf.dispose([a, c, la, lc, b.inputIds, b.attentionMask, ...Object.values(opt), ...Object.values(r.optimizerState!)]);

    expect(() => writeCheckpoint(ck, { model: m, cellfm: META })).toThrow(/already exists.*--force/);
    writeCheckpoint(ck, { model: m, cellfm: META }, { force: true });
    expect(fs.existsSync(path.join(ck, "optimizer.safetensors"))).toBe(false);
    r.model.dispose();
    m.dispose();
  });

  it("loads HF-style files (tied decoder weight present, position_ids buffer) and rejects bad checkpoints naming the file", () => {
    const m = new BertForMaskedLM(TINY, { seed: 8 });
    const ck = path.join(dir, "ck2");
    writeCheckpoint(ck, { model: m, cellfm: META });
    const mf = path.join(ck, "model.safetensors");
    const st = readSafetensors(mf);
    const hfLike = {
      ...st.tensors,
      "cls.predictions.decoder.weight": st.tensors["bert.embeddings.word_embeddings.weight"],
      "bert.embeddings.position_ids": { dtype: "I64" as const, shape: [1, 64], data: new BigInt64Array(64) },
    };
    writeSafetensors(mf, hfLike);
    const r = readCheckpoint(ck);
    r.model.dispose();

    // shape mismatch vs config
    const cfgFile = path.join(ck, "config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, intermediate_size: 48 }));
    expect(() => readCheckpoint(ck)).toThrow(/model\.safetensors: weight bert\.encoder\.layer\.0\.intermediate\.dense\.weight has shape \[64,32\]/);
    // invalid config names the field
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, num_attention_heads: 5 }));
    expect(() => readCheckpoint(ck)).toThrow(/config\.json.*num_attention_heads \(5\)/);
    fs.writeFileSync(cfgFile, "{ not json");
    expect(() => readCheckpoint(ck)).toThrow(/config\.json: corrupt/);
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    // truncated weights
    const full = fs.readFileSync(mf);
    fs.writeFileSync(mf, full.subarray(0, full.length >> 1));
    expect(() => readCheckpoint(ck)).toThrow(/model\.safetensors.*truncated/);
    fs.rmSync(mf);
    expect(() => readCheckpoint(ck)).toThrow(/model\.safetensors: missing/);
    // missing folder with a leftover half-written one
    const half = path.join(dir, "ck3.tmp-123-456");
    fs.mkdirSync(half);
    expect(() => readCheckpoint(path.join(dir, "ck3"))).toThrow(/ck3 not found; found a half-written checkpoint/);
    expect(() => readCheckpoint(half)).toThrow(/half-written/);
    m.dispose();
  });
});

describe("HF compatibility", () => {
  it("reproduces an independent PyTorch BERT on the same model.safetensors (hidden states and logits)", () => {
    const fx = path.join(path.dirname(new URL(import.meta.url).pathname), "fixtures", "hf_bert_tiny");
    const exp = JSON.parse(fs.readFileSync(path.join(fx, "expected_pytorch.json"), "utf8"));
    const r = readCheckpoint(fx); // plain HF folder: no cellfm block
    expect(r.cellfm.model_version).toBe("V1");
    const b = {
      inputIds: tf.tensor2d(exp.input_ids, undefined, "int32") as tf.Tensor2D,
      attentionMask: tf.tensor2d(exp.attention_mask, undefined, "float32") as tf.Tensor2D,
    };
    const out = r.model.forward(b, { training: false, outputHiddenStates: true });
    expect(out.hiddenStates!.length).toBe(exp.hidden_states.length);
    out.hiddenStates!.forEach((h, i) => expect(maxAbsDiff(h.dataSync(), exp.hidden_states[i]), `hidden state ${i}`).toBeLessThan(1e-4));
    const [B, L, H] = out.lastHiddenState.shape;
    const flat = tf.reshape(out.lastHiddenState, [B * L, H]) as tf.Tensor2D;
    const logits = r.model.head.logits(flat, { config: r.config, dropout: new DropoutContext(false) });
    expect(maxAbsDiff(logits.dataSync(), exp.logits)).toBeLessThan(1e-3);
    tf.dispose([flat, logits, out.lastHiddenState, ...out.hiddenStates!, b.inputIds, b.attentionMask]);
    r.model.dispose();
  });
});

describe("self-contained checkpoints", () => {
  it("copy the bundled dictionary, record transformers_version, keep cellfm's state out of HF's trainer_state.json; old checkpoints still read", async () => {
    const { loadGeneformerDictionaries } = await import("../../src/tokenize/dictionaries.js");
    const m = new BertForMaskedLM({ ...TINY }, { seed: 3 });
    const meta = { ...META, dictionary: loadGeneformerDictionaries("V1").files.tokens };
    const ck = path.join(dir, "self-contained");
    writeCheckpoint(ck, { model: m, cellfm: meta, trainerState: { step: 7, rng_state: {}, data_position: { epoch: 0, batch: 7 } } });
    m.dispose();
    const files = fs.readdirSync(ck).sort();
    expect(files).toEqual(expect.arrayContaining(["cellfm_state.json", "config.json", "ensembl_mapping_gc30M.tsv", "gene_median_gc30M.tsv", "model.safetensors", "token_dictionary_gc30M.tsv"]));
    expect(files).not.toContain("trainer_state.json");
    expect(fs.readFileSync(path.join(ck, "token_dictionary_gc30M.tsv"))).toEqual(fs.readFileSync("data/geneformer/token_dictionary_gc30M.tsv"));
    // the copy is a dictionary cellfm reads: same tokens as the bundled one
    expect(loadGeneformerDictionaries("V1", ck).files.tokens.sha256).toBe(meta.dictionary.sha256);
    const cfg = JSON.parse(fs.readFileSync(path.join(ck, "config.json"), "utf8"));
    expect(cfg.transformers_version).toMatch(/^4\.\d+\.\d+$/);
    let r = readCheckpoint(ck);
    expect(r.trainerState?.step).toBe(7);
    r.model.dispose();
    // an older checkpoint: cellfm's state under trainer_state.json
    fs.renameSync(path.join(ck, "cellfm_state.json"), path.join(ck, "trainer_state.json"));
    r = readCheckpoint(ck);
    expect(r.trainerState?.step).toBe(7);
    r.model.dispose();
    // HF Trainer's own trainer_state.json (as after continuing with transformers) is not read as cellfm's
    fs.writeFileSync(path.join(ck, "trainer_state.json"), JSON.stringify({ global_step: 100, log_history: [] }));
    r = readCheckpoint(ck);
    expect(r.trainerState).toBeUndefined();
    r.model.dispose();
    // another dictionary than the bundled one is not copied
    const m2 = new BertForMaskedLM({ ...TINY }, { seed: 3 });
    writeCheckpoint(path.join(dir, "other-dict"), { model: m2, cellfm: META });
    m2.dispose();
    expect(fs.existsSync(path.join(dir, "other-dict", "token_dictionary_gc30M.tsv"))).toBe(false);
  });
});
