/**
 * Fault injection, paths read from files (issue 20 §3): a manifest's shard path that is absolute,
 * climbs out of the dataset with `..`, or is a link out of it is refused before anything is opened,
 * and no message quotes a file's bytes; safetensors `data_offsets` are checked as the format
 * requires; duplicate cells are refused by `merge` and by `train`. Real cells: data/tiny.h5ad
 * (golden Geneformer V1 tokens, a one-step tiny BERT).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { TINY_MODEL, writeGoldenTokens } from "../train/helpers.js";
import { cli, expectRefused, tmpDir } from "./helpers.js";

let root: string;
let tokens: string;
let ckpt: string;

beforeAll(async () => {
  root = tmpDir("paths");
  tokens = path.join(root, "tokens");
  writeGoldenTokens(tokens);
  expect((await cli(["train", "--config", trainYaml("run", tokens), "--quiet"])).code).toBe(0);
  ckpt = path.join(root, "run", "final");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function trainYaml(name: string, data: string): string {
  const f = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    f,
    stringify({
      model: TINY_MODEL,
      data: { tokens: data, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, eval_cells: 16, seed: 7, max_steps: 1 },
      output: { dir: path.join(root, name) },
      backend: "wasm",
    }),
  );
  return f;
}

/** A copy of the tokens whose manifest names `file` as its first shard (or whose shards are `shards`). */
function evilTokens(name: string, edit: (m: { shards: { file: string; n_cells: number }[]; n_cells: number }) => void): string {
  const d = path.join(root, "sets", name, "tok");
  fs.mkdirSync(d, { recursive: true });
  for (const f of fs.readdirSync(tokens)) fs.copyFileSync(path.join(tokens, f), path.join(d, f));
  const m = JSON.parse(fs.readFileSync(path.join(d, "manifest.json"), "utf8"));
  edit(m);
  fs.writeFileSync(path.join(d, "manifest.json"), JSON.stringify(m));
  return d;
}

describe("a manifest's shard path stays inside its dataset", () => {
  it("`..`, an absolute path and a link out of the folder are refused by embed, merge and train before opening; nothing quotes the file", async () => {
    const cases: [string, string, string][] = [
      ["up", "../../../tokens/shard-00000.arrow", "leaves the folder"],
      ["passwd", "../../../../../../../../etc/passwd", "leaves the folder"],
      ["abs", "/etc/passwd", "is an absolute path"],
    ];
    for (const [name, file, why] of cases) {
      const d = evilTokens(name, (m) => (m.shards[0].file = file));
      const named = [`${path.join(d, "manifest.json")}: shard: ${JSON.stringify(file)} ${why}`];
      const e = path.join(root, `${name}.arrow`);
      const msg = await expectRefused(["embed", "-c", ckpt, "-i", d, "-o", e, "-q"], named, [d, tokens]);
      expect(msg).not.toMatch(/root:|\d{6,}/); // never the file's bytes, as text or as a number
      await expectRefused(["merge", "-i", d, "-o", path.join(root, `${name}-merged`)], named, [d, tokens]);
      await expectRefused(["train", "--config", trainYaml(`${name}-run`, d), "--quiet"], named, [d, tokens]);
      expect(fs.existsSync(e) || fs.existsSync(path.join(root, `${name}-merged`))).toBe(false);
    }
    const d = evilTokens("link", () => undefined);
    fs.rmSync(path.join(d, "shard-00000.arrow"));
    fs.symlinkSync(path.join(tokens, "shard-00000.arrow"), path.join(d, "shard-00000.arrow"));
    await expectRefused(["embed", "-c", ckpt, "-i", d, "-o", path.join(root, "link.arrow"), "-q"], ['"shard-00000.arrow" is a link that leaves the folder'], [tokens]);
  });

  it("a shard that is not Arrow is refused without quoting its bytes", async () => {
    const d = evilTokens("text", (m) => {
      delete (m.shards[0] as { bytes?: number }).bytes;
      delete (m.shards[0] as { sha256?: string }).sha256;
    });
    fs.writeFileSync(path.join(d, "shard-00000.arrow"), "root:x:0:0:root:/root:/bin/bash\n");
    const msg = await expectRefused(["embed", "-c", ckpt, "-i", d, "-o", path.join(root, "text.arrow"), "-q"], [`${path.join(d, "shard-00000.arrow")}: unreadable token shard`], [d]);
    expect(msg).not.toMatch(/root:|\d{6,}/);
  });
});

/** A copy of the checkpoint whose model.safetensors header is edited (data section unchanged, `extra` bytes appended). */
function evilCheckpoint(name: string, edit: (h: Record<string, { data_offsets: number[] }>) => void, extra = 0): string {
  const d = path.join(root, "ck", name);
  fs.mkdirSync(d, { recursive: true });
  for (const f of fs.readdirSync(ckpt)) fs.copyFileSync(path.join(ckpt, f), path.join(d, f));
  const buf = fs.readFileSync(path.join(d, "model.safetensors"));
  const hlen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + hlen).toString("utf8"));
  edit(header);
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(path.join(d, "model.safetensors"), Buffer.concat([len, json, buf.subarray(8 + hlen), Buffer.alloc(extra)]));
  return d;
}

describe("safetensors data_offsets as the format requires", () => {
  it("negative, overlapping, leaving a hole or not covering the data section: refused naming the file and the tensor", async () => {
    const first = (h: Record<string, { data_offsets: number[] }>) => Object.entries(h).filter(([k]) => k !== "__metadata__").sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
    const cases: [string, (h: Record<string, { data_offsets: number[] }>) => void, number, string][] = [
      ["negative", (h) => ((first(h)[0][1].data_offsets = [-8, first(h)[0][1].data_offsets[1] - 8])), 0, "invalid data_offsets"],
      ["overlap", (h) => { const [a, b] = first(h); const n = b[1].data_offsets[1] - b[1].data_offsets[0]; b[1].data_offsets = [a[1].data_offsets[1] - 4, a[1].data_offsets[1] - 4 + n]; }, 0, "overlap"],
      ["trailing", () => undefined, 8, "data_offsets must cover it exactly"],
      ["hole", (h) => { const all = first(h); const last = all[all.length - 1][1]; last.data_offsets = last.data_offsets.map((o) => o + 8); }, 8, "a hole of 8 bytes before tensor"],
    ];
    for (const [name, edit, extra, why] of cases) {
      const d = evilCheckpoint(name, edit, extra);
      await expectRefused(["embed", "-c", d, "-i", tokens, "-o", path.join(root, `st-${name}.arrow`), "-q"], [`${path.join(d, "model.safetensors")}: not a valid safetensors file`, why], [d, tokens]);
    }
  });
});

describe("duplicate cells", () => {
  it("merge refuses the same output twice and parts that share cells, naming them; train refuses a dataset with repeated cells", async () => {
    const merged = path.join(root, "dup-merged");
    await expectRefused(["merge", "-i", tokens, tokens, "-o", merged], [`${tokens} is given twice`], [tokens]);
    const copy = path.join(root, "tokens-copy");
    fs.cpSync(tokens, copy, { recursive: true });
    await expectRefused(["merge", "-i", tokens, copy, "-o", merged], ["300 cell id(s) occur more than once", `(${tokens} and ${copy})`], [tokens, copy]);
    expect(fs.existsSync(merged)).toBe(false);
    const twice = evilTokens("twice", (m) => {
      m.shards = [m.shards[0], m.shards[0]];
      m.n_cells *= 2;
    });
    await expectRefused(["train", "--config", trainYaml("twice-run", twice), "--quiet"], [`${twice}: 300 cell id(s) occur more than once`], [twice]);
    const e1 = path.join(root, "e1.arrow"), e2 = path.join(root, "e2.arrow");
    expect((await cli(["embed", "-c", ckpt, "-i", tokens, "-o", e1, "-q"])).code).toBe(0);
    fs.copyFileSync(e1, e2);
    await expectRefused(["merge", "-i", e1, e2, "-o", path.join(root, "e12.arrow")], ["occur more than once", `(${e1} and ${e2})`], [e1, e2]);
  });
});
