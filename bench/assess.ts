/**
 * Benchmark of `cellfm assess` at the study's size (seed-study.md §5): 44,500 cells × 2,435 genes,
 * 89 cell types × 500 cells, one 256-d embedding, sparsity like real data (~90 % zeros per cell).
 * Quick mode: 20 types × 100 cells × 500 genes; `CELLFM_BENCH_ASSESS_SHAPE=20x500x2435x256` (types ×
 * cells per type × genes × embedding dim) for another size, e.g. to profile at 10,000 cells. Reports wall
 * time, per-stage times (stages overlap: UMAP layouts run in worker threads while the main thread
 * computes the metrics, so "umap" is the wait after the metrics) and peak RSS (the process, workers
 * included). Goal (issue 4, §5): < 20 min and < 8 GB on 2 cores at full size; measured 6.1 min, 3.4 GiB
 * (docs/assess.md, "Scale").
 *
 * The dataset is generated on the fly (an in-memory CountMatrixSource that regenerates each chunk
 * from a seed), so nothing big is written except the embeddings Arrow file in a temp folder.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { makeRng } from "../src/rng.js";
import { writeEmbeddings } from "../src/data/embeddings.js";
import { runAssessment } from "../src/assess/run.js";
import type { CountMatrixSource, CsrChunk } from "../src/data/types.js";
import type { BenchRow } from "./run.js";

/** Synthetic counts: per type a log-normal gene profile; per cell a size factor; Poisson counts. */
export function syntheticSource(nTypes: number, perType: number, nGenes: number, seed = 0): { source: CountMatrixSource; profiles: Float64Array } {
  const n = nTypes * perType;
  const rng = makeRng(`profiles-${seed}`);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const base = Float64Array.from({ length: nGenes }, () => Math.exp(-2.6 + 1.6 * gauss()));
  const profiles = new Float64Array(nTypes * nGenes);
  for (let t = 0; t < nTypes; t++) for (let g = 0; g < nGenes; g++) profiles[t * nGenes + g] = base[g] * (rng() < 0.1 ? Math.exp(1.5 * gauss()) : 1);
  const ids = Array.from({ length: n }, (_, i) => `cell${i}`);
  const types = Array.from({ length: n }, (_, i) => `type${String(Math.floor(i / perType)).padStart(2, "0")}`);
  const batches = Array.from({ length: n }, (_, i) => `b${i % 3}`);
  const source: CountMatrixSource = {
    path: "synthetic",
    nCells: n,
    nGenes,
    obs: { index: ids, columns: { cell_type: types, batch: batches } },
    var: { index: Array.from({ length: nGenes }, (_, g) => `G${g}`), columns: {} },
    *chunks(chunkSize = 1024): Iterable<CsrChunk> {
      for (let start = 0; start < n; start += chunkSize) {
        const m = Math.min(chunkSize, n - start);
        const r = makeRng(`chunk-${seed}-${start}`);
        const indptr = new Float64Array(m + 1);
        const idx: number[] = [];
        const val: number[] = [];
        for (let c = 0; c < m; c++) {
          const t = Math.floor((start + c) / perType);
          const size = Math.exp(0.4 * (r() - 0.5) * 2);
          for (let g = 0; g < nGenes; g++) {
            const mu = profiles[t * nGenes + g] * size;
            // Poisson by inversion (means are small)
            let u = r();
            let p = Math.exp(-mu);
            let k = 0;
            while (u > p && k < 1000) {
              u -= p;
              k++;
              p *= mu / k;
            }
            if (k > 0) {
              idx.push(g);
              val.push(k);
            }
          }
          indptr[c + 1] = idx.length;
        }
        yield { start, nCells: m, indptr, indices: Int32Array.from(idx), data: Float64Array.from(val) };
      }
    },
    close() {},
  };
  return { source, profiles };
}

/** Run the assessment on the synthetic data (quick: small) and report time and memory. */
export async function run(opts: { quick: boolean }): Promise<BenchRow[]> {
  // CELLFM_BENCH_ASSESS_SHAPE="types x perType x genes x dim" overrides the size (profiling at a reduced size)
  const shapeEnv = process.env.CELLFM_BENCH_ASSESS_SHAPE?.split("x").map(Number);
  const [nTypes, perType, nGenes, dim] = shapeEnv?.length === 4 ? shapeEnv : opts.quick ? [20, 100, 500, 64] : [89, 500, 2435, 256];
  const { source, profiles } = syntheticSource(nTypes, perType, nGenes);
  const n = nTypes * perType;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-bench-assess-"));
  try {
    // an embedding: a fixed random projection of the log type profile plus cell noise
    const r = makeRng("emb");
    const proj = Float32Array.from({ length: nGenes * dim }, () => (r() - 0.5) / Math.sqrt(nGenes));
    const typeEmb = new Float32Array(nTypes * dim);
    for (let t = 0; t < nTypes; t++) {
      for (let j = 0; j < dim; j++) {
        let s = 0;
        for (let g = 0; g < nGenes; g++) s += Math.log1p(profiles[t * nGenes + g] * 10) * proj[g * dim + j];
        typeEmb[t * dim + j] = s;
      }
    }
    const data = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) {
      const t = Math.floor(i / perType);
      for (let j = 0; j < dim; j++) data[i * dim + j] = typeEmb[t * dim + j] + (r() - 0.5) * 0.5;
    }
    const emb = path.join(dir, "emb.arrow");
    writeEmbeddings(emb, { cellIds: source.obs.index, dim, data });
    const t0 = performance.now();
    const res = await runAssessment({
      input: "synthetic",
      source,
      embeddings: [emb],
      embeddingNames: ["embedding"],
      label: "cell_type",
      batch: "batch",
      output: path.join(dir, "report"),
      minCells: perType,
      nHvg: Math.min(2000, nGenes),
      quiet: process.env.CELLFM_BENCH_QUIET === "1",
    });
    const wall = (performance.now() - t0) / 1000;
    const peak = process.resourceUsage().maxRSS / 1024 / 1024; // KiB → GiB
    const shape = `${n} cells × ${nGenes} genes, ${nTypes} types, ${dim}-d embedding`;
    const rows: BenchRow[] = [
      { area: "assess", case: shape, metric: "wall time", value: wall, unit: "s", note: "goal < 1200 s at full size on 2 cores" },
      { area: "assess", case: shape, metric: "peak RSS", value: peak, unit: "GiB", note: "goal < 8 GiB" },
    ];
    for (const [stage, s] of Object.entries(res.timings)) rows.push({ area: "assess", case: shape, metric: `stage ${stage}`, value: s, unit: "s" });
    return rows;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// `npx tsx bench/assess.ts [--full]` runs it alone
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  run({ quick: !process.argv.includes("--full") }).then((rows) => console.table(rows));
}
