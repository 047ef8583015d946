/**
 * The denoising benchmark's data and baselines for one comparison (`<output>/denoise/`): the held-out
 * cells' full counts on the highly variable genes, their downsampled version (drawn once, seeded, so
 * every arm is scored on the same cells), and the scores of the two baselines (the downsampled input
 * itself and kNN smoothing). Scoring rules: `denoise.ts`; model predictions: `predict.ts`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { CountMatrixSource } from "../data/types.js";
import { writeFileAtomic } from "../io.js";
import { makeRng } from "../rng.js";
import { downsampleCounts, type DownsampleMethod } from "../train/downsample.js";
import { denoiseScore, knnSmooth, readBenchmarkCells, type DenoiseScore, type DenseCounts } from "./denoise.js";

/** Settings of the benchmark (`denoise:` in the comparison config). */
export interface DenoiseSettings {
  /** fraction of counts removed (scPRINT's `downsample_expr`, default 0.7). */
  fraction: number;
  /** binomial (every molecule kept with probability 1 − fraction, default) or scPRINT's downsample_profile. */
  method: DownsampleMethod;
  /** held-out cells scored (at most). */
  cells: number;
  /** kNN smoothing: cells averaged (the cell and its k − 1 nearest). */
  knn_k: number;
  n_pcs: number;
  n_hvg: number;
  seed: number;
}

/**
 * Downsample the benchmark cells with the denoising objective's own sampler (`src/train/downsample.ts`),
 * one seeded stream over the cells in order.
 */
export function downsampleCells(full: DenseCounts, fraction: number, method: DownsampleMethod, seed: number): DenseCounts {
  const rng = makeRng(`${seed}:denoise-benchmark`);
  const data = new Float32Array(full.data.length);
  for (let i = 0; i < full.nCells; i++) {
    data.set(downsampleCounts(full.data.subarray(i * full.nGenes, (i + 1) * full.nGenes), fraction, method, rng), i * full.nGenes);
  }
  return { nCells: full.nCells, nGenes: full.nGenes, data };
}

/** What `denoise/baselines.json` holds. */
export interface DenoiseBaselines {
  fraction: number;
  method: DownsampleMethod;
  nCells: number;
  nGenes: number;
  /** row indices of the scored cells in the input. */
  cells: number[];
  /** var indices of the scored genes. */
  genes: number[];
  /** the Geneformer token id of each scored gene (the models' vocabulary; `data.model_version`). */
  tokens: number[];
  /** fraction of the full counts that the downsampling removed. */
  removedFraction: number;
  downsampled: DenoiseScore;
  knn: DenoiseScore & { k: number };
}

function writeF32(file: string, a: Float32Array): void {
  writeFileAtomic(file, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

function readF32(file: string, n: number): Float32Array {
  const b = fs.readFileSync(file);
  if (b.byteLength !== n * 4) throw new Error(`${file}: expected ${n * 4} bytes, found ${b.byteLength} (delete the denoise/ folder to rebuild it)`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/**
 * Build (or reuse) the benchmark's held-out cells and score the baselines.
 * @param heldOut the training runs' validation cells (never trained on); the first `cells` are used.
 * @returns the baselines (also `<dir>/baselines.json`; `full.f32`, `noisy.f32` hold the matrices).
 */
export function runDenoiseBaselines(
  src: CountMatrixSource,
  heldOut: ArrayLike<number>,
  s: DenoiseSettings,
  dir: string,
  say: (line: string) => void = () => undefined,
  colToken?: Int32Array,
): DenoiseBaselines {
  const file = path.join(dir, "baselines.json");
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, "utf8")) as DenoiseBaselines;
  const rows = Array.from(heldOut).slice(0, s.cells);
  if (rows.length < 2) throw new Error(`denoise: needs at least 2 held-out cells, has ${rows.length} (raise data.val_fraction)`);
  say(`compare: denoising benchmark on ${rows.length} held-out cells (${Math.round(s.fraction * 100)} % of counts removed)`);
  // genes every model reads: a token of its own (several var columns summed into one token are left out)
  let eligible: Uint8Array | undefined;
  if (colToken) {
    const uses = new Map<number, number>();
    for (const t of colToken) if (t >= 0) uses.set(t, (uses.get(t) ?? 0) + 1);
    eligible = Uint8Array.from(colToken, (t) => (t >= 0 && uses.get(t) === 1 ? 1 : 0));
  }
  const { counts: full, genes } = readBenchmarkCells(src, rows, s.n_hvg, eligible);
  const noisy = downsampleCells(full, s.fraction, s.method, s.seed);
  let tf = 0;
  let tn = 0;
  for (let i = 0; i < full.data.length; i++) {
    tf += full.data[i];
    tn += noisy.data[i];
  }
  const knn = knnSmooth(noisy, { k: s.knn_k, nPcs: s.n_pcs, seed: s.seed });
  const res: DenoiseBaselines = {
    fraction: s.fraction,
    method: s.method,
    nCells: full.nCells,
    nGenes: full.nGenes,
    cells: rows,
    genes: Array.from(genes),
    tokens: colToken ? Array.from(genes, (gi) => colToken[gi]) : [],
    removedFraction: tf > 0 ? 1 - tn / tf : 0,
    downsampled: denoiseScore(full, noisy, noisy),
    knn: { ...denoiseScore(full, noisy, knn), k: s.knn_k },
  };
  fs.mkdirSync(dir, { recursive: true });
  writeF32(path.join(dir, "full.f32"), full.data);
  writeF32(path.join(dir, "noisy.f32"), noisy.data);
  writeFileAtomic(file, JSON.stringify(res, null, 2) + "\n");
  return res;
}

/** The benchmark's full and downsampled matrices written by {@link runDenoiseBaselines}. */
export function readBenchmarkMatrices(dir: string, b: DenoiseBaselines): { full: DenseCounts; noisy: DenseCounts } {
  const n = b.nCells * b.nGenes;
  return {
    full: { nCells: b.nCells, nGenes: b.nGenes, data: readF32(path.join(dir, "full.f32"), n) },
    noisy: { nCells: b.nCells, nGenes: b.nGenes, data: readF32(path.join(dir, "noisy.f32"), n) },
  };
}
