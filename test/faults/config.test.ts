/**
 * Fault injection, configs and memory (issue 20 §5): a model too large for memory (a typo such as
 * `max_position_embeddings: 1e8`) is refused naming the key before anything is allocated; YAML
 * merge keys work; `--resume` onto tokens of another encoding names both; `embed --shard` reads
 * only its shard's record batches. Refusals: exit code 1, one line, pre-existing files unchanged.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { readTokenizedDataset, readTokenizedManifest, readTokenizedRange } from "../../src/data/tokenized.js";
import { estimateMemory } from "../../src/model/memory.js";
import { GENEFORMER_V1_6L } from "../../src/model/config.js";
import { TINY_MODEL } from "../train/helpers.js";
import { cli, expectRefused, tmpDir } from "./helpers.js";

let root: string;
let tokens: string; // data/tiny.h5ad, rank encoding, record batches of 16 cells
let counts: string; // the same cells, counts encoding

function config(name: string, model: Record<string, unknown>, training: Record<string, unknown> = {}, data: Record<string, unknown> = {}): string {
  const f = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: { ...TINY_MODEL, ...model },
      data: { tokens, max_length: 64, val_fraction: 0.2, ...data },
      training: { batch_size: 16, eval_cells: 16, seed: 7, max_steps: 1, ...training },
      output: { dir: path.join(root, name) },
      backend: "wasm",
    }),
  );
  return f;
}

beforeAll(async () => {
  root = tmpDir("config");
  tokens = path.join(root, "tokens");
  counts = path.join(root, "counts");
  expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", tokens, "-q", "--chunk-size", "16"])).code).toBe(0);
  expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", counts, "-q", "--encoding", "counts"])).code).toBe(0);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("model size is estimated before allocating and refused naming the key", () => {
  it("max_position_embeddings: 1e8 (a typo) names the key, the estimate and the limit; nothing is written", async () => {
    const f = config("maxpos", { max_position_embeddings: 1e8 }, {}, { max_length: undefined });
    await expectRefused(["train", "--config", f], [f, "model.max_position_embeddings: 100000000", /position embeddings .* would hold 3\.2 G values|need ~[\d.]+ [GT]iB to train/], [tokens]);
    expect(fs.existsSync(path.join(root, "maxpos"))).toBe(false);
  });

  it("hidden_size: 1048576 names the key and the tensor that cannot exist (not 'Invalid typed array length')", async () => {
    const f = config("wide", { hidden_size: 1048576 });
    await expectRefused(["train", "--config", f], [f, "model.hidden_size: 1048576", "would hold", "more than one tensor can"], [tokens]);
    expect(fs.existsSync(path.join(root, "wide"))).toBe(false);
  });

  it.each([
    ["model.num_hidden_layers", 1_000_000],
    ["model.intermediate_size", 1e9],
    ["model.hidden_size", 20_000],
  ])("%s: %d names that key", async (key, value) => {
    const name = key.split(".")[1];
    const f = config(`typo-${name}`, { [name]: value }, { memory_limit_gb: 8 });
    await expectRefused(["train", "--config", f], [f, `${key}: ${value}`, /need ~[\d.]+ [GT]iB to train|more than one tensor can/], [tokens]);
  });

  it("the limit is stated and overridable: training.memory_limit_gb", async () => {
    const f = config("limit", { num_hidden_layers: 4 }, { memory_limit_gb: 0.001 });
    await expectRefused(["train", "--config", f], [f, "above the limit of", "training.memory_limit_gb: 0.001"], [tokens]);
    const ok = config("limit-ok", {}, { memory_limit_gb: 1 });
    expect((await cli(["train", "--config", ok, "--quiet"])).code).toBe(0);
  });

  it("the estimate: Geneformer V1 6L has its 10.3 M parameters; activations grow with batch × tokens² in attention", () => {
    const e = estimateMemory(GENEFORMER_V1_6L, { cells: 12, tokens: 2048 }, true);
    expect(e.parameters / 1e6).toBeCloseTo(10.3, 0);
    expect(e.weightBytes).toBe(16 * e.parameters);
    const half = estimateMemory(GENEFORMER_V1_6L, { cells: 12, tokens: 1024 }, true);
    expect(e.activationBytes / half.activationBytes).toBeGreaterThan(2.5);
  });
});

describe("YAML", () => {
  it("merge keys (<<: *defaults) are resolved; top-level x- keys hold anchors", async () => {
    const f = path.join(root, "merge.yaml");
    fs.writeFileSync(
      f,
      [
        "x-model: &model",
        ...Object.entries(TINY_MODEL).map(([k, v]) => `  ${k}: ${v}`),
        "x-training: &training",
        "  batch_size: 16",
        "  eval_cells: 16",
        "  seed: 7",
        "model:",
        "  <<: *model",
        "  num_hidden_layers: 1",
        `data: { tokens: ${JSON.stringify(tokens)}, max_length: 64, val_fraction: 0.2 }`,
        "training:",
        "  <<: *training",
        "  max_steps: 1",
        `output: { dir: ${JSON.stringify(path.join(root, "merge"))} }`,
        "backend: wasm",
        "",
      ].join("\n"),
    );
    const r = await cli(["train", "--config", f, "--quiet"]);
    expect(r.message).toBe("");
    expect(JSON.parse(fs.readFileSync(path.join(root, "merge", "final", "config.json"), "utf8")).hidden_size).toBe(TINY_MODEL.hidden_size);
  });
});

describe("--resume onto tokens of another encoding", () => {
  it("names the checkpoint and both encodings; the run is kept", async () => {
    const f = config("enc", {}, { max_steps: 2, save_every: 1 });
    expect((await cli(["train", "--config", f, "--quiet", "--max-steps", "1"])).code).toBe(0);
    const other = path.join(root, "enc-counts.yaml");
    fs.writeFileSync(other, fs.readFileSync(f, "utf8").replace(tokens, counts));
    await expectRefused(
      ["train", "--config", other, "--resume"],
      ["cannot resume from", "geneformer-rank-value (tokenize --encoding rank)", "scprint-counts (tokenize --encoding counts)", counts],
      [path.join(root, "enc"), counts],
    );
  });
});

describe("embed --shard reads only the shard's cells", () => {
  it("a cell range reads only the record batches holding it, and equals the slice of the whole dataset", async () => {
    const whole = readTokenizedDataset(tokens);
    const n = readTokenizedManifest(tokens).n_cells;
    expect(n).toBe(300);
    for (const [a, b] of [[0, 18], [75, 150], [290, 300], [100, 100]]) {
      const r = await readTokenizedRange(tokens, a, b);
      expect(r.cellIds).toEqual(whole.cellIds.slice(a, b));
      expect(r.inputIds.map((x) => Array.from(x).join())).toEqual(whole.inputIds.slice(a, b).map((x) => Array.from(x).join()));
      expect(Array.from(r.nCounts ?? [])).toEqual(Array.from(whole.nCounts ?? []).slice(a, b));
      expect(r.batchesRead).toBeLessThanOrEqual(Math.ceil((b - a) / 16) + 1);
    }
    await expect(readTokenizedRange(tokens, 10, 301)).rejects.toThrow(/not within its 300 cells/);
    // a corrupt shard is still caught (streamed checksum)
    const cut = path.join(root, "tokens-bad");
    fs.cpSync(tokens, cut, { recursive: true });
    const shard = path.join(cut, readTokenizedManifest(cut).shards[0].file);
    const buf = fs.readFileSync(shard);
    buf[buf.length >> 1] ^= 0xff;
    fs.writeFileSync(shard, buf);
    await expect(readTokenizedRange(cut, 0, 10)).rejects.toThrow(/SHA-256 differs/);
  });
});
