/**
 * Length-grouped batching, as HuggingFace `LengthGroupedSampler` (transformers
 * `trainer_pt_utils.py: get_length_grouped_indices`), which Geneformer pretraining used
 * (`group_by_length=True`, reference-spec §1b), plus a bound on padded tokens per batch.
 *
 * Per epoch: a random permutation of the cells is cut into mega-batches of
 * `min(floor(n / (4 * batchSize)), 50)` (at least 1) batches; each mega-batch is sorted by length,
 * longest first; the mega-batch holding the longest cell is swapped to the front (HF puts the
 * biggest batch first so an out-of-memory shows at once); the flat order is cut into batches of
 * `batchSize`. cellfm then splits any batch whose padded size (longest cell × cells) exceeds
 * `maxTokensPerBatch` into consecutive smaller batches (cells are sorted, so the first cell of each
 * piece is its longest).
 *
 * The plan of epoch `e` depends only on `(seed, e)` and the lengths, so a data position
 * `(epoch, batch index)` is all a checkpoint needs to resume exactly.
 */
import { makeRng } from "../rng.js";

/** Options for {@link epochBatches}. */
export interface SamplerOptions {
  /** Cells per batch (before the token bound). */
  batchSize: number;
  /** Upper bound on `longest cell × cells` per batch; undefined = no bound. */
  maxTokensPerBatch?: number;
  /** Sampler seed (combined with the epoch number). */
  seed: number;
  /** Mega-batch multiplier; default HF's `min(n / (4 * batchSize), 50)`, at least 1. */
  megaBatchMult?: number;
}

/**
 * HF `get_length_grouped_indices`: the cell order of one epoch.
 * @param lengths token count per cell (after truncation).
 * @param rng uniform [0,1) generator for the permutation.
 */
export function lengthGroupedIndices(
  lengths: ArrayLike<number>,
  batchSize: number,
  rng: () => number,
  megaBatchMult?: number,
): Int32Array {
  const n = lengths.length;
  let mult = megaBatchMult ?? Math.min(Math.floor(n / (batchSize * 4)), 50);
  if (mult === 0) mult = 1;
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  const mbSize = mult * batchSize;
  const megas: number[][] = [];
  for (let s = 0; s < n; s += mbSize) {
    const mb = Array.from(perm.subarray(s, Math.min(n, s + mbSize)));
    // stable sort, longest first (ties keep permutation order, like Python's sorted)
    mb.sort((a, b) => lengths[b] - lengths[a]);
    megas.push(mb);
  }
  if (megas.length > 1) {
    let maxIdx = 0;
    for (let k = 1; k < megas.length; k++) if (lengths[megas[k][0]] > lengths[megas[maxIdx][0]]) maxIdx = k;
    const t = megas[0][0];
    megas[0][0] = megas[maxIdx][0];
    megas[maxIdx][0] = t;
  }
  const out = new Int32Array(n);
  let k = 0;
  for (const mb of megas) for (const i of mb) out[k++] = i;
  return out;
}

/**
 * The batches of one epoch: arrays of cell indices (into `lengths`), each batch length-grouped,
 * at most `batchSize` cells and (when set) at most `maxTokensPerBatch` padded tokens.
 * @throws Error when one cell alone exceeds `maxTokensPerBatch`.
 */
export function epochBatches(lengths: ArrayLike<number>, epoch: number, opts: SamplerOptions): Int32Array[] {
  const rng = makeRng(`${opts.seed}:sampler:${epoch}`);
  const order = lengthGroupedIndices(lengths, opts.batchSize, rng, opts.megaBatchMult);
  const batches: Int32Array[] = [];
  const maxTok = opts.maxTokensPerBatch ?? Infinity;
  for (let s = 0; s < order.length; s += opts.batchSize) {
    const b = order.subarray(s, Math.min(order.length, s + opts.batchSize));
    // split by the token bound: padded size of a piece = max length in it × count
    let start = 0;
    while (start < b.length) {
      let maxLen = 0;
      let end = start;
      while (end < b.length) {
        const m = Math.max(maxLen, lengths[b[end]]);
        if (m * (end - start + 1) > maxTok) break;
        maxLen = m;
        end++;
      }
      if (end === start) {
        throw new Error(
          `a cell of ${lengths[b[start]]} tokens exceeds training.max_tokens_per_batch ${opts.maxTokensPerBatch}`,
        );
      }
      batches.push(b.slice(start, end));
      start = end;
    }
  }
  return batches;
}

/**
 * Deterministic stream of batches across epochs with a resumable position.
 * `position()` is `{ epoch, batch }` of the next batch to be returned.
 */
export class BatchStream {
  private plan: Int32Array[];
  private epoch: number;
  private index: number;

  constructor(
    private readonly lengths: ArrayLike<number>,
    private readonly opts: SamplerOptions,
    start: { epoch: number; batch: number } = { epoch: 0, batch: 0 },
  ) {
    if (lengths.length === 0) throw new Error("no training cells");
    this.epoch = start.epoch;
    this.index = start.batch;
    this.plan = epochBatches(lengths, this.epoch, opts);
    if (this.index > this.plan.length) throw new Error(`resume position batch ${this.index} beyond epoch ${this.epoch}`);
  }

  /** Position of the next batch. */
  position(): { epoch: number; batch: number } {
    return { epoch: this.epoch, batch: this.index };
  }

  /** Fractional epoch of the next batch (e.g. 1.25). */
  fractionalEpoch(): number {
    return this.epoch + this.index / this.plan.length;
  }

  /** Batches in the current epoch. */
  batchesInEpoch(): number {
    return this.plan.length;
  }

  /** The next batch (cell indices); rolls over to the next epoch's plan. */
  next(): Int32Array {
    if (this.index >= this.plan.length) {
      this.epoch++;
      this.index = 0;
      this.plan = epochBatches(this.lengths, this.epoch, this.opts);
    }
    return this.plan[this.index++];
  }
}
