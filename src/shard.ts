/**
 * `--shard k/N`: a deterministic slice of the cells, so one large input can be tokenized or embedded
 * as N independent jobs (a Slurm array, a Kubernetes indexed Job) whose outputs concatenate, in
 * shard order, to exactly the unsharded result (`cellfm merge`).
 */

/** Shard `index` (0-based) of `count`. */
export interface Shard {
  index: number;
  count: number;
}

/**
 * Parse `"k/N"` (0 ≤ k < N, integers), e.g. `"3/8"`, or `"$SLURM_ARRAY_TASK_ID/8"` after shell expansion.
 * @throws Error naming the flag when the text is not of that form.
 */
export function parseShard(text: string, flag = "--shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count)) {
    throw new Error(`${flag} must be k/N with 0 <= k < N (e.g. 0/4 for the first of 4 shards); got "${text}"`);
  }
  return { index, count };
}

/**
 * The cells `[start, end)` of shard k/N over `n` cells: `start = floor(k n / N)`, `end = floor((k+1) n / N)`.
 * The N ranges are contiguous, in order, and cover every cell once; sizes differ by at most one.
 */
export function shardRange(n: number, shard: Shard | undefined): { start: number; end: number } {
  if (!shard) return { start: 0, end: n };
  return { start: Math.floor((shard.index * n) / shard.count), end: Math.floor(((shard.index + 1) * n) / shard.count) };
}
