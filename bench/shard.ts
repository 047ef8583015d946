/**
 * Sharded embedding benchmark (issue 20 §5): peak RSS of `cellfm embed --shard 0/16` of a large
 * tokenized dataset, which must be bounded by the shard (1/16 of the cells), not by the dataset.
 * The dataset repeats data/tiny.h5ad's tokenized cells (PBMC, Geneformer V1 rank-value, ~700 tokens
 * a cell) under new cell ids: full 200,000 cells (two 100,000-cell shard files, ~0.6 GB), quick
 * 20,000. The model is a 1-step tiny one (the embedding itself is not what is measured). The
 * command runs in a child process (`runCli`, on `dist/` when built: run `npm run build` first).
 * Reference (issue 20): 1.63 GB peak for 0/16 of 200,000 cells when the whole dataset was loaded.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { main } from "../src/cli.js";
import { readTokenizedDataset, TokenizedDatasetWriter } from "../src/data/tokenized.js";
import { runCli } from "./tokenize.js";
import type { BenchRow } from "./run.js";

export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const nCells = quick ? 20_000 : 200_000;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-bench-shard-"));
  try {
    const small = path.join(tmp, "tiny-tokens");
    await main(["tokenize", "-i", "data/tiny.h5ad", "-o", small, "-q"]);
    const cfg = path.join(tmp, "train.yaml");
    fs.writeFileSync(
      cfg,
      stringify({
        model: { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 2048 },
        data: { tokens: small, val_fraction: 0.2 },
        training: { batch_size: 8, eval_cells: 8, max_steps: 1 },
        output: { dir: path.join(tmp, "run") },
        backend: "wasm",
      }),
    );
    await main(["train", "--config", cfg, "--quiet"]);
    // the large dataset: tiny's cells over and over, new ids, same dictionary and source
    const ds = readTokenizedDataset(small);
    const { format: _f, format_version: _v, n_cells: _n, shards: _s, columns: _c, obs_columns: _o, cellfm_version: _cv, created: _cr, ...meta } = ds.manifest;
    const big = path.join(tmp, "big-tokens");
    const w = new TokenizedDatasetWriter(big, meta);
    let tokens = 0;
    for (let start = 0; start < nCells; start += 512) {
      const n = Math.min(512, nCells - start);
      const ids = Array.from({ length: n }, (_, i) => ds.inputIds[(start + i) % ds.inputIds.length]);
      for (const c of ids) tokens += c.length;
      w.append({ cellIds: Array.from({ length: n }, (_, i) => `cell${start + i}`), inputIds: ids, ...(ds.nCounts ? { nCounts: Float64Array.from(ids, (_, i) => ds.nCounts![(start + i) % ds.inputIds.length]) } : {}) });
    }
    w.finish();
    const bytes = fs.readdirSync(big).reduce((k, f) => k + fs.statSync(path.join(big, f)).size, 0);
    const r = runCli(["embed", "-c", path.join(tmp, "run", "final"), "-i", big, "-o", path.join(tmp, "shard0.arrow"), "--shard", "0/16", "-q", "--backend", "wasm", "--workers", "1"]);
    const shardCells = Math.floor(nCells / 16);
    return [
      {
        area: "embed",
        case: `--shard 0/16 of ${nCells.toLocaleString("en-US")} cells (${shardCells.toLocaleString("en-US")} embedded)`,
        metric: "peak RSS",
        value: r.maxRssMb / 1024,
        unit: "GiB",
        note: `dataset ${(bytes / 2 ** 30).toFixed(2)} GiB on disk, ${(tokens / nCells).toFixed(0)} tokens/cell; whole-dataset load was 1.63 GB at 200,000 cells (issue 20)`,
      },
      { area: "embed", case: `--shard 0/16 of ${nCells.toLocaleString("en-US")} cells`, metric: "wall", value: r.wall, unit: "s" },
    ];
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
