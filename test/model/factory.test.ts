/**
 * The seam of issue 9 §1: one factory builds every model from config.json's `architectures` +
 * `cellfm` block (validated, named key on error); the task model = BertModel + head; embedding
 * extraction uses the BertModel only; the training loop, data-parallel code and gradient worker
 * never name an objective; the vocabulary comes from the dataset.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BertForMaskedLM, BertModel } from "../../src/model/bert.js";
import { readCheckpoint, writeCheckpoint, type CellfmMeta } from "../../src/model/checkpoint.js";
import { buildModel, modelSpecFrom } from "../../src/model/factory.js";
import { embedCells } from "../../src/embed/embed.js";
import { vocabularyOf } from "../../src/tokenize/dictionaries.js";
import { assertSupportedPair, SUPPORTED_PAIRS } from "../../src/train/objectives/index.js";
import { TINY, useBackend } from "./helpers.js";

let dir: string;
beforeAll(async () => {
  await useBackend("cpu");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-factory-"));
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
};

describe("model factory", () => {
  it("builds rank + mlm as HF BertForMaskedLM = bert (embeddings + layers) + cls head, same weights as the class", () => {
    const a = buildModel(TINY, { encoding: "geneformer-rank-value", objective: "mlm" }, { seed: 4 });
    const b = new BertForMaskedLM(TINY, { seed: 4 });
    expect(a).toBeInstanceOf(BertForMaskedLM);
    expect(a.spec.architecture).toBe("BertForMaskedLM");
    expect(a.bert).toBeInstanceOf(BertModel);
    expect([...a.weights.keys()]).toEqual([...b.weights.keys()]);
    const wa = a.exportWeights(), wb = b.exportWeights();
    for (const k of Object.keys(wb)) expect(wa[k].data).toEqual(wb[k].data);
    // embeddings from the encoder alone equal those through the whole model
    const cells = [Int32Array.from([5, 6, 7]), Int32Array.from([9, 10])];
    expect(embedCells(a.bert, cells, { layer: 0 })).toEqual(embedCells(a, cells, { layer: 0 }));
    a.dispose();
    b.dispose();
  });

  it("validates the cellfm block naming the key, and names both sides of an unsupported pair", () => {
    expect(() => modelSpecFrom({ objective: "mlm" })).toThrow(/cellfm\.encoding/);
    expect(() => modelSpecFrom({ encoding: "geneformer-rank-value", objective: 3 })).toThrow(/cellfm\.objective/);
    expect(() => modelSpecFrom({ encoding: "geneformer-rank-value", objective: "mlm", head: 5 })).toThrow(/cellfm\.head/);
    expect(() => modelSpecFrom({ encoding: "geneformer-rank-value", objective: "nope" })).toThrow(
      /cellfm\.encoding "geneformer-rank-value" with cellfm\.objective "nope" is not a supported pair/,
    );
    expect(() => modelSpecFrom({ encoding: "geneformer-rank-value", objective: "mlm" }, ["BertForSequenceClassification"])).toThrow(
      /architectures: "BertForSequenceClassification" does not match/,
    );
    expect(() => assertSupportedPair("geneformer-rank-value", "nope", "x.yaml")).toThrow(
      /x\.yaml: training\.objective "nope" is not supported with encoding "geneformer-rank-value"/,
    );
    expect(SUPPORTED_PAIRS.length).toBeGreaterThan(0);
  });

  it("readCheckpoint refuses a config.json whose cellfm block is invalid, naming the file and key", () => {
    const m = new BertForMaskedLM(TINY, { seed: 1 });
    const ck = path.join(dir, "ck");
    writeCheckpoint(ck, { model: m, cellfm: META });
    m.dispose();
    const cfgFile = path.join(ck, "config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
    expect(cfg.architectures).toEqual(["BertForMaskedLM"]);
    const r = readCheckpoint(ck);
    expect(r.model).toBeInstanceOf(BertForMaskedLM);
    r.model.dispose();
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, cellfm: { ...cfg.cellfm, objective: "zzz" } }));
    expect(() => readCheckpoint(ck)).toThrow(/config\.json: cellfm\.encoding "geneformer-rank-value" with cellfm\.objective "zzz"/);
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, cellfm: { ...cfg.cellfm, encoding: undefined } }));
    expect(() => readCheckpoint(ck)).toThrow(/config\.json: cellfm\.encoding/);
  });
});

describe("vocabulary from the dataset", () => {
  it("comes from the manifest's vocabulary block, else from the dictionary of its model version", () => {
    expect(vocabularyOf({ model_version: "V1" }, "t")).toMatchObject({ size: 25426, pad: 0, mask: 1 });
    expect(vocabularyOf({ model_version: "V2" }, "t")).toMatchObject({ size: 20275, pad: 0, mask: 1, eos: 3 });
    expect(vocabularyOf({ vocabulary: { size: 60, pad: 2, mask: 3 } }, "t")).toMatchObject({ size: 60, pad: 2, mask: 3 });
    expect(() => vocabularyOf({}, "tok")).toThrow(/tok\/manifest\.json: records neither a vocabulary nor a Geneformer model_version/);
  });
});

describe("no objective names in the shared training code", () => {
  it("loop, parallel, grad-worker and grad-protocol go through the objective interface and do not import each other in a cycle", () => {
    const src = (f: string) => fs.readFileSync(path.join("src/train", f), "utf8");
    for (const f of ["parallel.ts", "grad-worker.ts", "grad-protocol.ts"]) {
      expect(src(f)).not.toMatch(/\bmlm|Mlm|MaskedLM|masking\.js/);
    }
    expect(src("loop.ts")).not.toMatch(/collateMlm|BertForMaskedLM|unigramLoss|masking\.js.*collate/);
    expect(src("grad-worker.ts")).not.toMatch(/from "\.\/parallel\.js"|import\("\.\/parallel\.js"\)/);
    expect(src("parallel.ts")).not.toMatch(/from "\.\/grad-worker\.js"/);
  });
});
