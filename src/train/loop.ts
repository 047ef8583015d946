/**
 * The training loop of `cellfm train`: pretraining of a BERT encoder on a tokenized dataset, as
 * Geneformer pretrained (HF `Trainer` + `LengthGroupedSampler` + AdamW, reference-spec §1b), with
 * nanoGPT-style logging (tokens/s, MFU) and exact resume. What is predicted comes from the
 * objective (`./objectives/`: collate, baseline, output-bias init, head FLOPs), chosen by the
 * tokenized dataset's encoding and `training.objective`; the model from `src/model/factory.ts`.
 *
 * Output folder layout:
 * ```
 * <output.dir>/
 *   run.json              config, backend, data split, MFU peak used, model size
 *   metrics.jsonl         one JSON object per logged step: step, epoch, tokens (seen so far), loss, lr, grad_norm,
 *                         tokens_per_s, mfu (+ val_loss on evaluation steps)
 *   checkpoint-<step>/    periodic checkpoints (last `keep_last` kept), written atomically
 *   final/                the checkpoint at the end of training (embed this one)
 *   eval.json             held-out loss of the model vs the objective's baseline (rank MLM: unigram)
 * ```
 * Every checkpoint holds `config.json`, `model.safetensors`, `optimizer.safetensors` and
 * `trainer_state.json` (step, data position, RNG state), so `--resume` continues from the newest
 * one (highest step among `checkpoint-*` and `final`) exactly: same batches, same masks, same
 * dropout, same optimizer state → the same losses as an uninterrupted run on the same backend.
 *
 * **Several cores** (`training.workers` N > 1, `--workers`; by default every core on wasm/cpu, see
 * {@link defaultWorkers}): tfjs-wasm runs one thread per backend in
 * Node, so the loop trains data-parallel (DDP-style) over the main thread and N − 1 worker threads
 * (`parallel.ts`). Each micro-batch is still collated (masked) here from the one RNG stream, then
 * split by cells into N shards of about equal tokens; the shards' gradients are combined weighted
 * by their loss positions (masked tokens for MLM), which is the whole micro-batch's gradient (to float rounding), so
 * `workers` changes speed, not the batch or the learning curve. Clipping and AdamW run here; the
 * updated weights are then broadcast to the replicas (cheaper than replaying AdamW on each: one
 * copy and no optimizer state per replica). Each shard's dropout seed derives from the micro-batch's
 * seed and the shard index, so the same seed and workers give identical losses, and resume stays
 * exact. `workers` is recorded in run.json and trainer_state.json.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import cliProgress from "cli-progress";
import { initBackend, type BackendChoice, type BackendInfo } from "../backend.js";
import { throwIfWebGPUFailed } from "../webgpu.js";
import { readTokenizedDataset, type TokenizedDataset } from "../data/tokenized.js";
import { type CellModel, RANK_ENCODING } from "../model/bert.js";
import { type BertConfig, validateBertConfig } from "../model/config.js";
import { buildModel } from "../model/factory.js";
import { vocabularyOf, type Vocabulary } from "../tokenize/dictionaries.js";
import { appendChecked, writeFileAtomic } from "../io.js";
import { finishOutputDir, lockRunDir, prepareOutputDir, readMetricsRows } from "./output.js";
import { isOutputLockHeld, releaseOutputLock } from "../lock.js";
export { removeAbortedStart } from "./output.js";
import { availableCores, checkThreadCount } from "../threads.js";
import { makeRng, type Rng } from "../rng.js";
import { listCheckpoints, loadTrainingCheckpoint, saveTrainingCheckpointAsync, type TrainerState } from "./checkpoints.js";
import { resolveModelSection, type TrainConfig } from "./config.js";
import { checkResumeEncoding, checkTrainingMemory } from "./preflight.js";
import { defaultPeakFlops, trainingFlops } from "./flops.js";
import { batchTensors, disposeBatch } from "./grad-protocol.js";
import { makeObjective, type CollatedBatch, type Objective, type TrainCell } from "./objectives/index.js";
import { CellObjective, evaluateTerms, withCellObjectives } from "./objectives/cell.js";
import { AdamW, GradAccumulator, clipByGlobalNorm, lrAt, squaredNormTensor } from "./optimizer.js";
import { DataParallel, shardBatch } from "./parallel.js";
import { BatchStream, epochBatches } from "./sampler.js";
import { applyGeneAxis, filterCellGenes, type GeneAxis, type GeneAxisReport, prepareGeneAxis, restrictToGenes } from "./gene-axis.js";

/** Options of {@link train}. */
export interface TrainOptions {
  /** Continue from the newest checkpoint in the output folder. */
  resume?: boolean;
  /** Replace an existing, non-empty output folder (its content is deleted first). */
  force?: boolean;
  /** No progress bar and no log lines on stderr. */
  quiet?: boolean;
  /** Override `training.max_steps` (the schedule length follows). */
  maxSteps?: number;
  /** Override the config's `backend`. */
  backend?: TrainConfig["backend"];
  /** Override `training.workers` (ranks for data-parallel training; 1 = the main thread only). */
  workers?: number;
  /** Stop (saving a checkpoint, as on Ctrl-C) after this many optimizer steps in this call (tests). */
  stopAfter?: number;
  /**
   * Install SIGINT, SIGTERM and SIGHUP handlers that finish the step, save a checkpoint and return
   * (default true). SIGTERM is how Slurm and Kubernetes stop a job (SIGKILL follows after a grace
   * period, 30 s by default on both), SIGHUP a closed terminal or ssh session.
   */
  handleSigint?: boolean;
  /** Called after every optimizer step. */
  onStep?: (m: StepMetrics) => void;
  /** Called with every collated training micro-batch before its gradient (tests: what the model saw). */
  onBatch?: (b: CollatedBatch) => void;
  /** Where human-readable lines go (default stderr). */
  log?: (line: string) => void;
}

/** Metrics of one optimizer step (also the rows of `metrics.jsonl`). */
export interface StepMetrics {
  /** Optimizer steps done (1-based). */
  step: number;
  /** Fractional epoch reached (training cells seen / training cells). */
  epoch: number;
  /** Real (non-pad) training tokens seen up to and including this step. */
  tokens: number;
  /** Mean training loss (MLM: nats per masked token) over the micro-batches of this step (or the log interval). */
  loss: number;
  /** Learning rate used by this step. */
  lr: number;
  /** Global gradient 2-norm before clipping. */
  grad_norm: number;
  /** Real (non-pad) tokens per second. */
  tokens_per_s: number;
  /** Model FLOPs utilisation: achieved model FLOP/s ÷ the peak recorded in run.json. */
  mfu: number;
  /** Held-out loss (fixed masks / noise), on evaluation steps. */
  val_loss?: number;
}

/** Held-out evaluation written to `eval.json`. */
export interface EvalResult {
  /** Optimizer steps of the evaluated model. */
  step: number;
  /** What ran the matmuls (`BackendInfo.kernels`: the native BLAS or plain wasm). */
  kernels: string;
  /** Training objective ("mlm", ...) and the tokenized dataset's encoding. */
  objective: string;
  encoding: string;
  /** Mean loss of the model at the held-out positions (MLM: cross-entropy, nats, fixed mask). */
  model_loss: number;
  /** Mean loss of the objective's baseline at the same positions. */
  baseline_loss: number;
  /** Name of the baseline ("unigram" for rank MLM). */
  baseline_name: string;
  /** Rank MLM: the unigram baseline's loss (= `baseline_loss`). */
  unigram_loss?: number;
  /** Same loss of the untrained model (step 0, initial weights), when known. */
  initial_loss?: number;
  /** `baseline_loss − model_loss` (positive = the model beats the baseline). */
  improvement: number;
  /** Held-out cells evaluated and positions scored (masked positions for MLM). */
  n_cells: number;
  n_masked: number;
  /** How the baseline is defined. */
  baseline: string;
  /**
   * `training.objectives`: each term on the held-out cells (its weight, the model's loss, the
   * untrained model's, its own baseline's); `model_loss` above is the weighted sum.
   */
  terms?: Record<string, { weight: number; model_loss: number; initial_loss?: number; baseline_loss?: number; baseline_name?: string; improvement?: number }>;
  /** The cell embedding's pooling (`model.pooling`), with cell-level objectives. */
  pooling?: string;
  /** Gene-axis counts (genes with / without a vector, placed / unplaced, held out), when any option is on. */
  gene_axis?: GeneAxisReport;
  /**
   * `data.split.genes`: the objective's loss restricted to the held-out genes (never in a training
   * context) on the held-out cells, next to the objective's baseline at the same positions.
   */
  held_out_genes?: HeldOutGeneEval;
}

/** The held-out-gene entries of eval.json (see {@link EvalResult.held_out_genes}). */
export interface HeldOutGeneEval {
  /** Held-out genes, held-out cells evaluated, loss positions scored (those of held-out genes). */
  n_genes: number;
  n_cells: number;
  n_positions: number;
  /** (absent when no held-out cell had a held-out gene in its context) */
  model_loss?: number;
  /** Untrained model at the same positions (step 0). */
  initial_loss?: number;
  baseline_loss?: number;
  baseline_name?: string;
  /** `baseline_loss − model_loss` (positive = the model beats the baseline on genes it never saw). */
  improvement?: number;
  /** How to read it. */
  note: string;
}

/** Result of {@link train}. */
export interface TrainResult {
  outputDir: string;
  /** Path of the checkpoint written last (`final/`, or `checkpoint-<step>/` when interrupted). */
  checkpoint: string;
  /** Optimizer steps done in total. */
  step: number;
  totalSteps: number;
  /** True when stopped early by a signal or `stopAfter`. */
  interrupted: boolean;
  /** The signal that stopped the run (`SIGINT`, `SIGTERM` or `SIGHUP`), when one did. */
  signal?: NodeJS.Signals;
  backend: BackendInfo;
  /** Held-out evaluation (only when training completed). */
  eval?: EvalResult;
  /** Per-step losses of this call (in order), for tests and scripts. */
  losses: number[];
}

/** The data view used by the loop: truncated cells, split into training and validation cells. */
interface PreparedData {
  dataset: TokenizedDataset;
  modelVersion: string | undefined;
  vocabulary: Vocabulary;
  objective: Objective;
  cells: TrainCell[];
  trainIdx: Int32Array;
  valIdx: Int32Array;
  trainLengths: Int32Array;
  /** Gene vectors, genomic positions, held-out genes (`./gene-axis.ts`). */
  axis: GeneAxis;
  /** With held-out genes: the validation cells (aligned with `valIdx`) with their held-out genes kept. */
  heldOutGeneCells?: TrainCell[];
}

/** Split cells into training and validation sets by a seeded permutation. */
export function splitCells(n: number, valFraction: number, seed: number): { train: Int32Array; val: Int32Array } {
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  const rng = makeRng(`${seed}:split`);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  let nVal = Math.round(n * valFraction);
  if (valFraction > 0 && nVal === 0 && n > 1) nVal = 1;
  const val = perm.slice(0, nVal).sort();
  const train = perm.slice(nVal).sort();
  return { train, val };
}

function prepareData(config: TrainConfig, bert: Omit<BertConfig, "vocab_size">): PreparedData {
  const dataset = readTokenizedDataset(config.data.tokens);
  const mv = dataset.manifest.model_version;
  const dictVocab = vocabularyOf(dataset.manifest, config.data.tokens);
  const vocabulary: Vocabulary = config.model.vocab_size === undefined ? dictVocab : { ...dictVocab, size: config.model.vocab_size };
  const vocabSize = vocabulary.size;
  if (dataset.inputIds.length < 2) throw new Error(`${config.data.tokens}: needs at least 2 cells to train, has ${dataset.inputIds.length}`);
  const maxLength = Math.min(config.data.max_length ?? bert.max_position_embeddings, bert.max_position_embeddings);
  const axis = prepareGeneAxis(config, dataset.manifest, vocabulary, dataset.inputIds, bert.hidden_size);
  // genes without a vector (missing: drop) and held-out genes never enter a training context, nor the padding pool
  const removed = [axis.dropped, axis.heldOut];
  const mt = dataset.manifest.measured_tokens;
  const manifest =
    mt && (axis.dropped || axis.heldOut) ? { ...dataset.manifest, measured_tokens: mt.filter((t) => !axis.dropped?.[t] && !axis.heldOut?.[t]) } : dataset.manifest;
  const tokenObjective = makeObjective(
    dataset.manifest.encoding,
    config.training.objective,
    { vocabulary, training: config.training, maxLength, manifest, tokens: config.data.tokens },
    config.source,
  );
  // training.objectives / model.pooling: cell-level terms on top of the token objective (./objectives/cell.ts)
  const objective = withCellObjectives(tokenObjective, {
    objectives: config.training.objectives,
    pooling: config.model.pooling,
    bottleneck: config.training.bottleneck,
    encoding: dataset.manifest.encoding,
    manifest,
    tokens: config.data.tokens,
    vocabulary,
    maxLength,
    sampling: { maxLength, padWithUnexpressed: config.training.pad_with_unexpressed, pool: manifest.measured_tokens ? Int32Array.from(manifest.measured_tokens) : undefined },
    dataset,
  });
  const cells: TrainCell[] = [];
  let maxId = 0;
  for (let i = 0; i < dataset.inputIds.length; i++) {
    const f = filterCellGenes(dataset.inputIds[i], dataset.values?.[i], removed, dataset.counts?.[i]);
    const c = objective.cellFromDataset(f.ids, f.values, dataset.nCounts?.[i], f.counts, i);
    for (const t of c.inputIds) if (t > maxId) maxId = t;
    cells.push(c);
  }
  if (maxId >= vocabSize) {
    throw new Error(`${config.source}: model.vocab_size: ${vocabSize} is too small for token id ${maxId} in ${config.data.tokens}`);
  }
  const { train, val } = splitCells(cells.length, config.data.val_fraction, config.data.split_seed);
  const emptyCell = cells.findIndex((c) => c.inputIds.length === 0);
  if (emptyCell >= 0) {
    const why = axis.dropped || axis.heldOut ? " left (after removing genes without a vector / held-out genes)" : "";
    throw new Error(`${config.data.tokens}: cell ${dataset.cellIds[emptyCell]} has no tokens${why}`);
  }
  const heldOutGeneCells = axis.heldOut
    ? Array.from(val, (i) => {
        const f = filterCellGenes(dataset.inputIds[i], dataset.values?.[i], [axis.dropped], dataset.counts?.[i]);
        return objective.cellFromDataset(f.ids, f.values, dataset.nCounts?.[i], f.counts, i);
      })
    : undefined;
  return {
    axis,
    heldOutGeneCells,
    dataset,
    modelVersion: mv,
    vocabulary,
    objective,
    cells,
    trainIdx: train,
    valIdx: val,
    trainLengths: Int32Array.from(train, (i) => objective.contextLength(cells[i])),
  };
}

/** Build the fixed-mask validation batches (masks drawn once from a seed, so values are comparable). */
function validationBatches(p: PreparedData, config: TrainConfig, objective: Objective): CollatedBatch[] {
  const t = config.training;
  const idx = p.valIdx.slice(0, Math.min(p.valIdx.length, t.eval_cells));
  const lengths = Int32Array.from(idx, (i) => p.objective.contextLength(p.cells[i]));
  // a length-grouped plan over the validation cells (deterministic), then a fixed mask
  const plan = epochBatches(lengths, 0, {
    batchSize: t.batch_size,
    maxTokensPerBatch: t.max_tokens_per_batch,
    seed: config.data.split_seed,
  });
  const rng = makeRng(`${t.seed}:val-mask`);
  return plan.map((b) =>
    objective.collate(
      Array.from(b, (k) => p.cells[idx[k]]),
      rng,
    ),
  );
}

/**
 * The held-out-gene evaluation batches: the validation cells with their held-out genes, collated
 * with a fixed seed, scored only at the positions of held-out genes (batches without one are left out).
 */
function heldOutGeneBatches(p: PreparedData, config: TrainConfig, objective: Objective, encoding: string): CollatedBatch[] {
  if (!p.heldOutGeneCells || !p.axis.heldOut) return [];
  const t = config.training;
  const n = Math.min(p.heldOutGeneCells.length, t.eval_cells);
  const lengths = Int32Array.from({ length: n }, (_, k) => objective.contextLength(p.heldOutGeneCells![k]));
  const plan = epochBatches(lengths, 0, { batchSize: t.batch_size, maxTokensPerBatch: t.max_tokens_per_batch, seed: config.data.split_seed });
  const rng = makeRng(`${t.seed}:val-mask-held-out-genes`);
  const byLabel = encoding === RANK_ENCODING && objective.name === "mlm";
  return plan
    .map((b) => restrictToGenes(objective.collate(Array.from(b, (k) => p.heldOutGeneCells![k]), rng), p.axis.heldOut!, byLabel))
    .filter((b) => b.positions.length > 0);
}

/**
 * Mean loss of the model over fixed batches (eval mode, no dropout), each batch weighted by its
 * loss positions (MLM: masked-token cross-entropy per masked gene).
 */
export async function evaluateLoss(model: CellModel, batches: readonly CollatedBatch[]): Promise<{ loss: number; n: number }> {
  const losses: tf.Scalar[] = [];
  const weights: number[] = [];
  try {
    for (const b of batches) {
      if (b.positions.length === 0) continue;
      const t = batchTensors(b);
      try {
        losses.push(model.loss(t, b, { training: false }));
        weights.push(b.positions.length);
      } finally {
        disposeBatch(t);
      }
    }
    // one asynchronous read for all batches (webgpu has no synchronous read)
    const values = await readScalars(losses);
    let sum = 0;
    let n = 0;
    values.forEach((l, i) => ((sum += l * weights[i]), (n += weights[i])));
    return { loss: n > 0 ? sum / n : NaN, n };
  } finally {
    tf.dispose(losses);
  }
}

/** Read scalar tensors to numbers with one asynchronous device read (stacked first). */
export async function readScalars(xs: tf.Scalar[]): Promise<number[]> {
  if (xs.length === 0) return [];
  const s = tf.stack(xs);
  try {
    const v = Array.from(await s.data());
    throwIfWebGPUFailed();
    return v;
  } finally {
    s.dispose();
  }
}

/**
 * The step's one device read: its micro-batch losses (tensors, disposed here; numbers from the
 * data-parallel path pass through) and the global gradient norm of `grads`, read together before
 * clipping and the update (the divergence checks need them first).
 */
async function readStep(microLosses: (number | tf.Scalar)[], grads: Map<string, tf.Tensor>): Promise<{ losses: number[]; norm: number }> {
  const tensors = microLosses.filter((l): l is tf.Scalar => typeof l !== "number");
  const sq = squaredNormTensor(grads);
  try {
    const v = await readScalars([...tensors, sq]);
    let k = 0;
    return { losses: microLosses.map((l) => (typeof l === "number" ? l : v[k++])), norm: Math.sqrt(v[v.length - 1]) };
  } finally {
    tf.dispose([...tensors, sq]);
  }
}

/** Fields that define the architecture (a resume with any of them changed is refused). */
const ARCH_FIELDS: (keyof BertConfig)[] = [
  "vocab_size",
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "intermediate_size",
  "hidden_act",
  "max_position_embeddings",
  "type_vocab_size",
  "pad_token_id",
  "layer_norm_eps",
];

/** List the architecture differences between two configs ("field: a (config) vs b (checkpoint)"). */
export function architectureDiff(a: BertConfig, b: BertConfig): string[] {
  const out: string[] = [];
  for (const k of ARCH_FIELDS) if (a[k] !== b[k]) out.push(`model.${k}: ${a[k]} (config) vs ${b[k]} (checkpoint)`);
  return out;
}

/** Signals that stop training with a checkpoint. */
const STOP_SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** The error of a non-finite loss or gradient: the step, and the last good checkpoint to go back to. */
function divergedMessage(outDir: string, what: string, step: number): string {
  const cks = listCheckpoints(outDir);
  const last = cks.length ? cks[cks.length - 1].dir : undefined;
  return (
    `training diverged: ${what} at step ${step}; stopped without saving it. ` +
    (last
      ? `The last good checkpoint is ${last} (continue from it with --resume, after lowering training.lr)`
      : `No checkpoint was saved before it; lower training.lr (or raise training.warmup_steps) and run again`)
  );
}

/**
 * Optimizer steps needed to train on `maxTokens` real (non-pad) tokens: the first step whose
 * cumulative tokens reach the budget, replaying the deterministic length-grouped batch plan
 * (`grad_accumulation` micro-batches per step) from the start of training.
 *
 * @param lengths tokens per training cell (after truncation), in training-cell order.
 * @returns the steps and the tokens those steps see (>= maxTokens), and the tokens of the first step.
 */
export function stepsForTokenBudget(
  lengths: Int32Array,
  t: Pick<TrainConfig["training"], "batch_size" | "max_tokens_per_batch" | "seed" | "grad_accumulation">,
  maxTokens: number,
): { steps: number; tokens: number; firstStepTokens: number } {
  const stream = new BatchStream(lengths, { batchSize: t.batch_size, maxTokensPerBatch: t.max_tokens_per_batch, seed: t.seed });
  let steps = 0;
  let tokens = 0;
  let firstStepTokens = 0;
  while (tokens < maxTokens) {
    for (let k = 0; k < t.grad_accumulation; k++) for (const i of stream.next()) tokens += lengths[i];
    steps++;
    if (steps === 1) firstStepTokens = tokens;
  }
  return { steps, tokens, firstStepTokens };
}

function totalStepsFor(config: TrainConfig, p: PreparedData, opts: TrainOptions): number {
  const t = config.training;
  if (opts.maxSteps !== undefined) return opts.maxSteps;
  if (t.max_steps !== undefined) return t.max_steps;
  if (t.max_tokens !== undefined) {
    const b = stepsForTokenBudget(p.trainLengths, t, t.max_tokens);
    if (b.steps === 1 && b.firstStepTokens > t.max_tokens) {
      throw new Error(
        `${config.source}: training.max_tokens: ${t.max_tokens} is smaller than one optimizer step (${b.firstStepTokens} tokens: ` +
          `batch_size ${t.batch_size} × grad_accumulation ${t.grad_accumulation} cells)`,
      );
    }
    return b.steps;
  }
  let micro = 0;
  for (let e = 0; e < (t.epochs ?? 1); e++) {
    micro += epochBatches(p.trainLengths, e, { batchSize: t.batch_size, maxTokensPerBatch: t.max_tokens_per_batch, seed: t.seed }).length;
  }
  return Math.ceil(micro / t.grad_accumulation);
}

/** What a training configuration will do, without training: see {@link trainingPlan}. */
export interface TrainingPlan {
  /** Optimizer steps of the run (from max_steps, epochs or the max_tokens budget). */
  totalSteps: number;
  nTrainCells: number;
  nValCells: number;
  /** Real training tokens per epoch (after truncation to data.max_length). */
  tokensPerEpoch: number;
}

/**
 * Read the tokens of `config` and work out the run's length, as {@link train} will, without
 * touching the output folder (for comparisons that check every configuration before training).
 * @throws Error as {@link train} does for bad data (token ids ≥ vocab_size, empty cells) or a
 *   `training.max_tokens` budget smaller than one optimizer step.
 */
export function trainingPlan(config: TrainConfig): TrainingPlan {
  const bertNoVocab = resolveModelSection(config.model) as Omit<BertConfig, "vocab_size">;
  const p = prepareData(config, bertNoVocab);
  let tokensPerEpoch = 0;
  for (const l of p.trainLengths) tokensPerEpoch += l;
  return { totalSteps: totalStepsFor(config, p, {}), nTrainCells: p.trainIdx.length, nValCells: p.valIdx.length, tokensPerEpoch };
}

function hasGeneAxis(a: GeneAxis): boolean {
  return a.vectors !== undefined || a.positions !== undefined || a.heldOut !== undefined;
}

function sha(s: string): string {
  // small, dependency-free FNV-1a (for the split fingerprint only)
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** Below this many training FLOPs per micro-batch, the default is one rank (see {@link defaultWorkers}). */
export const MIN_PARALLEL_STEP_FLOPS = 1e9;

/**
 * Data-parallel ranks when neither `training.workers` nor `--workers` is given: every core this
 * process may use ({@link availableCores}) on wasm/cpu, where each rank is one backend thread, at
 * most the cells of a micro-batch; 1 on tensorflow (tfjs-node), which already threads every op, and
 * on webgpu (one GPU, one process);
 * and 1 for micro-batches under {@link MIN_PARALLEL_STEP_FLOPS} training FLOPs (tiny models: there
 * the worker start-up and the per-step weight/gradient messages cost more than they save, as for
 * `embed`'s one-thread rule for small inputs).
 * @param backendName the active backend (`tf.getBackend()`)
 * @param cellsPerStep cells of a typical micro-batch (`batch_size`, fewer when tokens per batch bind)
 * @param stepFlops training FLOPs of a typical micro-batch (`./flops.ts`)
 */
export function defaultWorkers(backendName: string, cellsPerStep: number, stepFlops: number): number {
  if (backendName === "tensorflow" || backendName === "webgpu" || !(stepFlops >= MIN_PARALLEL_STEP_FLOPS)) return 1;
  return Math.max(1, Math.min(availableCores(), Math.floor(cellsPerStep)));
}

/** Cells and encoder training FLOPs of a typical micro-batch: `batch_size` cells of the mean training length, capped by `max_tokens_per_batch`. */
function typicalStep(c: BertConfig, lengths: Int32Array, batchSize: number, maxTokensPerBatch: number | undefined): { cells: number; flops: number } {
  let sum = 0;
  for (const l of lengths) sum += l;
  const mean = lengths.length ? Math.max(1, sum / lengths.length) : 1;
  const cells = Math.max(1, Math.min(batchSize, maxTokensPerBatch ? Math.floor(maxTokensPerBatch / mean) : batchSize));
  return { cells, flops: trainingFlops(c, new Array(cells).fill(mean), 0) };
}

/** The inputs a run's output folder may not overlap. */
function runInputs(config: TrainConfig): { path: string; label: string }[] {
  return [{ path: config.data.tokens, label: `${config.source}: data.tokens` }];
}

/**
 * Train (or resume) a run into `config.output.dir`, holding the folder's lock for the whole run; a
 * previous run replaced with `--force` is removed once the new run has a checkpoint, and put back
 * when the new run fails before it has one (`./output.ts`).
 */
export async function train(config: TrainConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const locked = isOutputLockHeld(config.output.dir); // by a caller of this process (re-entrant)
  try {
    lockRunDir(config.output.dir, runInputs(config)); // before a checkpoint is looked for or anything is read
    const r = await trainRun(config, opts);
    for (const l of finishOutputDir(config.output.dir)) if (!opts.quiet) log(`note: ${l}`);
    return r;
  } catch (e) {
    if (isOutputLockHeld(config.output.dir)) for (const l of finishOutputDir(config.output.dir)) log(`note: ${l}`);
    throw e;
  } finally {
    if (!locked) releaseOutputLock(config.output.dir);
  }
}

async function trainRun(config: TrainConfig, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const say = (s: string) => {
    if (!opts.quiet) log(s);
  };
  const t = config.training;
  const outDir = config.output.dir;
  const bertNoVocab = resolveModelSection(config.model) as Omit<BertConfig, "vocab_size">;

  // Validate everything that can fail before touching the output folder.
  if (opts.resume && opts.force) throw new Error("pass either --resume or --force, not both");
  const askedWorkers = opts.workers ?? t.workers;
  if (askedWorkers !== undefined) checkThreadCount(askedWorkers, opts.workers !== undefined ? "--workers" : `${config.source}: training.workers`);
  const p = prepareData(config, bertNoVocab);
  const bertConfig = validateBertConfig({ ...bertNoVocab, vocab_size: p.vocabulary.size });
  checkTrainingMemory(config, bertConfig, p.trainLengths);
  const encoding = p.dataset.manifest.encoding;
  const objective = p.objective;
  let resumeFrom: string | undefined;
  if (opts.resume) {
    const cks = listCheckpoints(outDir);
    if (cks.length === 0) throw new Error(`--resume: no checkpoint in ${outDir} (expected checkpoint-<step>/ or final/)`);
    resumeFrom = cks[cks.length - 1].dir;
    checkResumeEncoding(resumeFrom, encoding, config.data.tokens);
  }
  if (opts.maxSteps !== undefined && !(Number.isInteger(opts.maxSteps) && opts.maxSteps > 0)) {
    throw new Error(`--max-steps must be a positive integer, got ${opts.maxSteps}`);
  }
  const backend = await initBackend(opts.backend ?? config.backend, { webgpu: true });
  prepareOutputDir(outDir, opts, say, runInputs(config));

  const totalSteps = totalStepsFor(config, p, opts);
  const splitFingerprint = sha(Array.from(p.valIdx).join(",") + (p.axis.heldOutTokens ? `|genes:${Array.from(p.axis.heldOutTokens).join(",")}` : ""));
  const typical = typicalStep(bertConfig, p.trainLengths, t.batch_size, t.max_tokens_per_batch);
  let workers = askedWorkers ?? defaultWorkers(backend.name, typical.cells, typical.flops);
  if (backend.name === "webgpu" && workers > 1) {
    say(`workers ${workers} ignored on webgpu: one process drives the GPU (the data-parallel ranks are for the one-thread CPU backends)`);
    workers = 1;
  }

  const model = buildModel(bertConfig, { encoding, objective: objective.name, ...(objective.head ? { head: objective.head } : {}), ...p.axis.spec, ...objective.spec }, { seed: t.seed });
  applyGeneAxis(model, p.axis);
  const optimizer = new AdamW(model.trainableWeights, {
    beta1: t.adam_beta1,
    beta2: t.adam_beta2,
    epsilon: t.adam_epsilon,
    weightDecay: t.weight_decay,
  });
  const trainCells = (): TrainCell[] => Array.from(p.trainIdx, (i) => p.cells[i]);
  if (t.init_output_bias !== "zeros" && !resumeFrom) objective.initOutputBias(model, trainCells(), t.init_output_bias);
  let step = 0;
  /** real (non-pad) training tokens seen so far (the x axis of token-budget comparisons) */
  let tokensSeen = 0;
  let position = { epoch: 0, batch: 0 };
  let rng: Rng = makeRng(`${t.seed}:mask`);

  if (resumeFrom) {
    const ck = loadTrainingCheckpoint(resumeFrom, model);
    const diff = architectureDiff(bertConfig, ck.config);
    if (diff.length > 0) {
      ck.dispose();
      model.dispose();
      optimizer.dispose();
      throw new Error(`cannot resume from ${resumeFrom}: the architecture differs:\n  ${diff.join("\n  ")}`);
    }
    const st = ck.trainerState;
    const dictNow = p.dataset.manifest.dictionary?.sha256;
    if (st.dictionary_sha256 && dictNow && st.dictionary_sha256 !== dictNow) {
      throw new Error(`cannot resume from ${resumeFrom}: the tokens in ${config.data.tokens} use a different dictionary`);
    }
    if (st.split_fingerprint !== splitFingerprint) {
      throw new Error(`cannot resume from ${resumeFrom}: the train/validation split differs (data or data.split_seed/val_fraction changed)`);
    }
    ck.applyWeights();
    optimizer.loadState(ck.optimizerState);
    for (const x of Object.values(ck.optimizerState)) x.dispose();
    const wasWorkers = st.workers ?? st.training?.workers ?? 1;
    // the default follows the checkpoint (so a resume is exact) when this machine has the cores for it
    if (askedWorkers === undefined && wasWorkers !== workers && backend.name !== "tensorflow" && wasWorkers <= availableCores()) workers = wasWorkers;
    if (st.kernels && st.kernels !== backend.kernels) {
      say(`note: ${resumeFrom} was trained with matmul kernels "${st.kernels}", this run uses "${backend.kernels}"; the losses will not be bit-identical to an uninterrupted run`);
    }
    if (wasWorkers !== workers) {
      say(
        `note: ${resumeFrom} was trained with workers=${wasWorkers}, this run uses workers=${workers}; ` +
          `the batches are the same but the losses will not be bit-identical to an uninterrupted run`,
      );
    }
    step = st.step;
    tokensSeen = st.tokens_seen ?? 0;
    position = st.data_position;
    rng = makeRng(`${t.seed}:mask`, st.rng_state);
    // drop metrics logged after the checkpoint (they will be produced again)
    const mfile = path.join(outDir, "metrics.jsonl");
    if (fs.existsSync(mfile)) {
      const keep = readMetricsRows(mfile, log).filter((r) => r.step <= step);
      writeFileAtomic(mfile, keep.map((r) => JSON.stringify(r) + "\n").join(""));
    }
    say(`resuming from ${resumeFrom} at step ${step}`);
  }

  let peak = t.peak_flops ? { flops: t.peak_flops, source: "training.peak_flops in the config" } : defaultPeakFlops(backend.name, backend.kernels);
  if (!t.peak_flops && workers > 1 && backend.name !== "tensorflow") {
    // one backend thread per rank: the single-thread peak times the ranks
    peak = { flops: peak.flops * workers, source: `${peak.source}; × ${workers} ranks (training.workers)` };
  }
  const runInfo = {
    config_file: config.source,
    config: { model: bertConfig, data: config.data, training: t, output: config.output },
    backend: backend.name,
    backend_package: backend.package,
    kernels: backend.kernels,
    workers,
    total_steps: totalSteps,
    n_cells: p.cells.length,
    n_train_cells: p.trainIdx.length,
    n_val_cells: p.valIdx.length,
    split_fingerprint: splitFingerprint,
    n_parameters: model.numParameters,
    mfu_peak_flops: peak.flops,
    mfu_peak_source: peak.source,
    tokens: { path: config.data.tokens, manifest: p.dataset.manifest },
    ...(hasGeneAxis(p.axis) ? { gene_axis: p.axis.report } : {}),
    ...(p.axis.heldOutTokens ? { held_out_genes: Array.from(p.axis.heldOutTokens) } : {}),
    started: new Date().toISOString(),
  };
  writeFileAtomic(path.join(outDir, "run.json"), JSON.stringify(runInfo, null, 2) + "\n");
  say(
    `cellfm train: backend ${backend.name} (${backend.package}); ${model.numParameters.toLocaleString("en-US")} parameters; ` +
      `${p.trainIdx.length} training / ${p.valIdx.length} validation cells; ${totalSteps} steps` +
      (workers > 1 ? `; ${workers} workers (data-parallel)` : ""),
  );
  say(`matmul kernels: ${backend.kernels}`);
  for (const l of p.axis.lines) say(l);
  for (const w of p.axis.warnings) log(w);
  if (workers > 1 && backend.name === "tensorflow") {
    say(`note: training.workers ${workers}: worker threads are meant for the wasm/cpu backends; tensorflow already uses every core`);
  }

  const stream = new BatchStream(p.trainLengths, { batchSize: t.batch_size, maxTokensPerBatch: t.max_tokens_per_batch, seed: t.seed }, position);
  const valBatches = validationBatches(p, config, objective);
  const heldOutBatches = heldOutGeneBatches(p, config, objective, encoding);
  if (p.axis.heldOut && heldOutBatches.length === 0) {
    log(`warning: no held-out cell of the first ${t.eval_cells} has a held-out gene in its context; eval.json will have no held-out-gene loss`);
  }
  const metricsFile = path.join(outDir, "metrics.jsonl");

  const cellfmMeta = {
    encoding,
    objective: objective.name,
    ...(objective.head ? { head: objective.head } : {}),
    ...p.axis.spec,
    ...objective.spec,
    model_version: p.modelVersion,
    dictionary: p.dataset.manifest.dictionary,
    // value encodings tokenized with --top-genes: `cellfm denoise` reads the same genes per cell
    ...(p.dataset.manifest.top_genes !== undefined ? { top_genes: p.dataset.manifest.top_genes } : {}),
    backend: backend.name,
  };
  const state = (): TrainerState => ({
    step,
    total_steps: totalSteps,
    epoch: stream.fractionalEpoch(),
    tokens_seen: tokensSeen,
    data_position: stream.position(),
    rng_seed: `${t.seed}:mask`,
    rng_state: rng.state(),
    split_fingerprint: splitFingerprint,
    dictionary_sha256: p.dataset.manifest.dictionary?.sha256,
    backend: backend.name,
    kernels: backend.kernels,
    workers,
    training: t,
    saved: new Date().toISOString(),
  });
  const save = async (dir: string): Promise<void> => {
    const optState = optimizer.exportState();
    try {
      // never save a diverged model: a finite loss and gradient can still overflow a weight
      const diverged = (name: string) => new Error(divergedMessage(outDir, `weight ${name} non-finite after the update`, step));
      await saveTrainingCheckpointAsync(dir, { model, cellfm: cellfmMeta, optimizerState: optState, trainerState: state() }, diverged);
    } finally {
      for (const x of Object.values(optState)) x.dispose();
    }
  };
  const prune = (): void => {
    const cks = listCheckpoints(outDir).filter((c) => c.name.startsWith("checkpoint-"));
    for (const c of cks.slice(0, Math.max(0, cks.length - t.keep_last))) fs.rmSync(c.dir, { recursive: true, force: true });
  };

  // Ctrl-C, SIGTERM (Slurm, Kubernetes), SIGHUP: finish the current step, save a checkpoint,
  // return. A second signal exits at once (128 + its number, the shell's convention).
  let interruptRequested = false;
  let stopSignal: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interruptRequested) process.exit(128 + (os.constants.signals[sig] ?? 2));
    interruptRequested = true;
    stopSignal = sig;
    log(`\ncellfm train: ${sig} received; saving a checkpoint after this step (a second signal aborts without saving)`);
  };
  const handle = opts.handleSigint ?? true;
  if (handle) for (const s of STOP_SIGNALS) process.on(s, onSignal);

  const useBar = !opts.quiet && process.stderr.isTTY === true;
  const bar = useBar
    ? new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: "train |{bar}| step {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {eta_formatted}",
          etaBuffer: 50,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(totalSteps, step, { loss: "-", val: "-", tps: "-" });

  // data-parallel replicas start in the background (about a second) while the main thread evaluates
  const dpStart = workers > 1 ? DataParallel.start(model, { workers, backend: backend.name as BackendChoice }) : undefined;
  dpStart?.catch(() => undefined); // awaited below; a failure must not surface as unhandled first
  let dp: DataParallel | undefined;

  const losses: number[] = [];
  let interrupted = false;
  let lastVal: number | undefined;
  let stepsThisCall = 0;
  // log-interval accumulators
  let intLoss = 0;
  let intSteps = 0;
  let intTokens = 0;
  let intFlops = 0;
  let intStart = performance.now();
  const acc = new GradAccumulator();
  // held-out loss of the untrained model (step 0), the starting point of the learning curve
  let initialLoss: number | undefined;
  let initialHeldOutGeneLoss: number | undefined;
  let initialTerms: Record<string, number> | undefined;
  try {
    if (!resumeFrom && heldOutBatches.length > 0) initialHeldOutGeneLoss = (await evaluateLoss(model, heldOutBatches)).loss;
    if (!resumeFrom && valBatches.length > 0) {
      initialLoss = (await evaluateLoss(model, valBatches)).loss;
      initialTerms = objective instanceof CellObjective ? await evaluateTerms(model, valBatches) : undefined;
      const termCols = initialTerms ? Object.fromEntries(Object.entries(initialTerms).map(([k, v]) => [`val_${k}`, v])) : {};
      appendChecked(metricsFile, JSON.stringify({ step: 0, epoch: 0, tokens: 0, val_loss: initialLoss, ...termCols }) + "\n");
      say(`step 0 val_loss ${initialLoss.toFixed(4)} (untrained)`);
    } else {
      for (const r of readMetricsRows(metricsFile, log)) {
        if (r.step === 0 && r.val_loss !== undefined) initialLoss = r.val_loss;
        if (r.step === 0) {
          const tv = Object.entries(r).filter(([k]) => k.startsWith("val_") && k !== "val_loss");
          if (tv.length) initialTerms = Object.fromEntries(tv.map(([k, v]) => [k.slice(4), v]));
        }
      }
    }
    if (dpStart) {
      dp = await dpStart;
      dp.syncWeights();
      intStart = performance.now();
    }
    while (step < totalSteps) {
      if (interruptRequested || (opts.stopAfter !== undefined && stepsThisCall >= opts.stopAfter)) {
        interrupted = true;
        break;
      }
      // losses stay on the device until the step's one read (with the gradient norm) below
      const microLosses: (number | tf.Scalar)[] = [];
      for (let k = 0; k < t.grad_accumulation; k++) {
        const idx = stream.next();
        const cells = Array.from(idx, (i) => p.cells[p.trainIdx[i]]);
        const mb = objective.collate(cells, rng);
        opts.onBatch?.(mb);
        const dropoutSeed = Math.floor(rng() * 2147483647);
        let loss: number | tf.Scalar, grads: Map<string, tf.Tensor>;
        if (dp) {
          // split by cells over the ranks; the combined loss/gradient is the whole micro-batch's
          ({ loss, grads } = await dp.lossAndGrads(shardBatch(mb, dp.size, dropoutSeed)));
        } else {
          const tens = batchTensors(mb);
          try {
            ({ loss, grads } = model.lossTensorAndGrads(tens, mb, { training: true, dropoutSeed }));
          } finally {
            disposeBatch(tens);
          }
        }
        acc.add(grads, 1 / t.grad_accumulation);
        microLosses.push(loss);
        intTokens += mb.realTokens;
        tokensSeen += mb.realTokens;
        intFlops += trainingFlops(bertConfig, cells.map((c) => objective.contextLength(c)), objective.headFlops(bertConfig, mb));
      }
      const lr = lrAt(step, { lr: t.lr, warmupSteps: t.warmup_steps, totalSteps, schedule: t.schedule });
      const summed = acc.take();
      const { losses: stepLosses, norm: readNorm } = await readStep(microLosses, summed);
      const bad = stepLosses.find((l) => !Number.isFinite(l));
      if (bad !== undefined) {
        for (const g of summed.values()) g.dispose();
        throw new Error(divergedMessage(outDir, `loss ${bad}`, step + 1));
      }
      const { grads, norm } = clipByGlobalNorm(summed, t.max_grad_norm, readNorm);
      if (!Number.isFinite(norm)) {
        // stop before the update: the weights (and the checkpoints) stay finite
        for (const g of grads.values()) g.dispose();
        throw new Error(divergedMessage(outDir, `gradient norm ${norm}`, step + 1));
      }
      optimizer.applyGradients(grads, lr);
      for (const g of grads.values()) g.dispose();
      dp?.syncWeights(); // replicas take the updated weights before their next shard
      step++;
      stepsThisCall++;
      const loss = stepLosses.reduce((a, b) => a + b, 0) / stepLosses.length;
      losses.push(loss);
      intLoss += loss;
      intSteps++;

      let valLoss: number | undefined;
      let valTerms: Record<string, number> | undefined;
      if (t.eval_every > 0 && step % t.eval_every === 0 && step < totalSteps && valBatches.length > 0) {
        valLoss = (await evaluateLoss(model, valBatches)).loss;
        lastVal = valLoss;
        if (objective instanceof CellObjective) valTerms = await evaluateTerms(model, valBatches);
      }
      const now = performance.now();
      const secs = (now - intStart) / 1000;
      const m: StepMetrics = {
        step,
        epoch: Number(stream.fractionalEpoch().toFixed(4)),
        tokens: tokensSeen,
        loss,
        lr,
        grad_norm: norm,
        tokens_per_s: intTokens / Math.max(secs, 1e-9),
        mfu: intFlops / Math.max(secs, 1e-9) / peak.flops,
      };
      if (valLoss !== undefined) m.val_loss = valLoss;
      opts.onStep?.(m);
      if (step % t.log_every === 0 || valLoss !== undefined || step === totalSteps) {
        const row = { ...m, loss: intLoss / intSteps, ...(valTerms ? Object.fromEntries(Object.entries(valTerms).map(([k, v]) => [`val_${k}`, v])) : {}) };
        appendChecked(metricsFile, JSON.stringify(row) + "\n");
        bar?.update(step, {
          loss: row.loss.toFixed(3),
          val: lastVal !== undefined ? lastVal.toFixed(3) : "-",
          tps: Math.round(row.tokens_per_s).toString(),
        });
        if (!useBar) {
          say(
            `step ${step}/${totalSteps} epoch ${row.epoch.toFixed(2)} loss ${row.loss.toFixed(4)}` +
              (valLoss !== undefined ? ` val_loss ${valLoss.toFixed(4)}` : "") +
              ` lr ${lr.toExponential(2)} grad_norm ${norm.toFixed(3)} ${Math.round(row.tokens_per_s)} tok/s MFU ${(row.mfu * 100).toFixed(1)}%`,
          );
        }
        intLoss = 0;
        intSteps = 0;
        intTokens = 0;
        intFlops = 0;
        intStart = performance.now();
      } else {
        bar?.update(step);
      }
      if (t.save_every > 0 && step % t.save_every === 0 && step < totalSteps) {
        await save(path.join(outDir, `checkpoint-${step}`));
        prune();
      }
      // let signals (Ctrl-C) and other events in
      await new Promise((r) => setImmediate(r));
    }
  } catch (e) {
    optimizer.dispose();
    model.dispose();
    throw e;
  } finally {
    acc.dispose();
    bar?.stop();
    if (handle) for (const s of STOP_SIGNALS) process.off(s, onSignal);
    // stop the worker threads on every exit path (a live worker keeps the process running)
    await dpStart?.then((d) => d.dispose(), () => undefined);
  }

  try {
    if (interrupted) {
      const dir = path.join(outDir, `checkpoint-${step}`);
      if (!fs.existsSync(dir)) await save(dir);
      say(`cellfm train: stopped at step ${step}/${totalSteps}; checkpoint ${dir}; continue with --resume`);
      return { outputDir: outDir, checkpoint: dir, step, totalSteps, interrupted: true, signal: stopSignal, backend, losses };
    }

    const finalDir = path.join(outDir, "final");
    await save(finalDir);
    const ev = await evaluateLoss(model, valBatches);
    const base = objective.baseline(trainCells(), valBatches);
    const evalResult: EvalResult = {
      step,
      kernels: backend.kernels,
      objective: objective.name,
      encoding,
      model_loss: ev.loss,
      baseline_loss: base.loss,
      baseline_name: base.name,
      ...base.extra,
      initial_loss: initialLoss,
      improvement: base.loss - ev.loss,
      n_cells: Math.min(p.valIdx.length, t.eval_cells),
      n_masked: ev.n,
      baseline: base.description,
      ...(hasGeneAxis(p.axis) ? { gene_axis: p.axis.report } : {}),
    };
    if (objective instanceof CellObjective) {
      // every term of training.objectives on the held-out cells, next to its own baseline
      const now = await evaluateTerms(model, valBatches);
      const bases = objective.termBaselines(trainCells(), valBatches);
      evalResult.terms = Object.fromEntries(
        Object.entries(now).map(([k, v]) => [
          k,
          {
            weight: objective.o.objectives[k] ?? 0,
            model_loss: v,
            ...(initialTerms?.[k] !== undefined ? { initial_loss: initialTerms[k] } : {}),
            ...(bases[k] ? { baseline_loss: bases[k].loss, baseline_name: bases[k].name, improvement: bases[k].loss - v } : {}),
          },
        ]),
      );
      evalResult.pooling = objective.o.pooling;
    }
    if (heldOutBatches.length > 0) {
      const hv = await evaluateLoss(model, heldOutBatches);
      // the baseline sees the held-out genes' counts in the training cells (which the model never did)
      const fullTrain = Array.from(p.trainIdx, (i) => {
        const f = filterCellGenes(p.dataset.inputIds[i], p.dataset.values?.[i], [p.axis.dropped], p.dataset.counts?.[i]);
        return objective.cellFromDataset(f.ids, f.values, p.dataset.nCounts?.[i], f.counts, i);
      });
      const hb = objective.baseline(fullTrain, heldOutBatches);
      evalResult.held_out_genes = {
        n_genes: p.axis.heldOutTokens!.length,
        n_cells: Math.min(p.valIdx.length, t.eval_cells),
        n_positions: hv.n,
        model_loss: hv.loss,
        ...(initialHeldOutGeneLoss !== undefined ? { initial_loss: initialHeldOutGeneLoss } : {}),
        baseline_loss: hb.loss,
        baseline_name: hb.name,
        improvement: hb.loss - hv.loss,
        note:
          "loss at the positions of held-out genes (never in a training context) in the held-out cells; the baseline is fitted on the training cells " +
          "including those genes' counts, so it knows each held-out gene's mean, which the model can only infer from its external vector",
      };
    } else if (p.axis.heldOut) {
      evalResult.held_out_genes = {
        n_genes: p.axis.heldOutTokens!.length,
        n_cells: Math.min(p.valIdx.length, t.eval_cells),
        n_positions: 0,
        note: "no held-out cell had a held-out gene in its context",
      };
    }
    writeFileAtomic(path.join(outDir, "eval.json"), JSON.stringify(evalResult, null, 2) + "\n");
    appendChecked(
      metricsFile,
      JSON.stringify({
        step,
        epoch: stream.fractionalEpoch(),
        tokens: tokensSeen,
        val_loss: ev.loss,
        [`${base.name}_val_loss`]: base.loss,
        ...(evalResult.held_out_genes?.model_loss !== undefined
          ? { held_out_gene_val_loss: evalResult.held_out_genes.model_loss, [`held_out_gene_${evalResult.held_out_genes.baseline_name}_val_loss`]: evalResult.held_out_genes.baseline_loss }
          : {}),
      }) + "\n",
    );
    return { outputDir: outDir, checkpoint: finalDir, step, totalSteps, interrupted: false, backend, eval: evalResult, losses };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
