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
 *                         tokens_per_s, mfu (+ val_loss on evaluation steps); with `training.objectives`, each
 *                         term's training loss `train_<term>` (the interval's mean, before its weight; `loss` is
 *                         their weighted sum) and on evaluation steps its held-out loss `val_<term>`
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
import { readScalars, readValues } from "../webgpu.js";
import { readTokenizedDataset, type TokenizedDataset } from "../data/tokenized.js";
import type { CellModel } from "../model/bert.js";
import { type BertConfig, validateBertConfig } from "../model/config.js";
import { buildModel } from "../model/factory.js";
import { vocabularyOf, type Vocabulary } from "../tokenize/dictionaries.js";
import { appendChecked, writeFileAtomic } from "../io.js";
import { finishOutputDir, lockRunDir, prepareOutputDir, readMetricsRows } from "./output.js";
import { isOutputLockHeld, releaseOutputLock } from "../lock.js";
export { removeAbortedStart } from "./output.js";
import { availableCores, checkThreadCount } from "../threads.js";
import { makeRng, type Rng } from "../rng.js";
import { listCheckpoints, loadTrainingCheckpoint, saveTrainingCheckpoint, type TrainerState } from "./checkpoints.js";
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
    contrastive: config.training.contrastive,
    context: { vocabulary, training: config.training, maxLength, manifest, tokens: config.data.tokens },
    where: config.source,
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
function heldOutGeneBatches(p: PreparedData, config: TrainConfig, objective: Objective): CollatedBatch[] {
  if (!p.heldOutGeneCells || !p.axis.heldOut) return [];
  const t = config.training;
  const n = Math.min(p.heldOutGeneCells.length, t.eval_cells);
  const lengths = Int32Array.from({ length: n }, (_, k) => objective.contextLength(p.heldOutGeneCells![k]));
  const plan = epochBatches(lengths, 0, { batchSize: t.batch_size, maxTokensPerBatch: t.max_tokens_per_batch, seed: config.data.split_seed });
  const rng = makeRng(`${t.seed}:val-mask-held-out-genes`);
  const byLabel = objective.labelIsGene === true;
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

/** A run of {@link train}: what it trains, on what, and where it is (the mutable position). */
interface Run {
  config: TrainConfig;
  opts: TrainOptions;
  t: TrainConfig["training"];
  outDir: string;
  log: (s: string) => void;
  say: (s: string) => void;
  p: PreparedData;
  bertConfig: BertConfig;
  encoding: string;
  objective: Objective;
  backend: BackendInfo;
  totalSteps: number;
  splitFingerprint: string;
  /** workers asked for (`--workers`, `training.workers`), and the ranks used. */
  askedWorkers?: number;
  workers: number;
  model: CellModel;
  optimizer: AdamW;
  /** the checkpoint this run continues from (`--resume`). */
  resumeFrom?: string;
  /** optimizer steps done, real (non-pad) training tokens seen (the x axis of token budgets), the mask/dropout stream. */
  step: number;
  tokensSeen: number;
  rng: Rng;
  position: { epoch: number; batch: number };
}

/**
 * Run setup: validate everything that can fail before touching the output folder, read the data,
 * start the backend, prepare the output folder, build the model (fresh weights, output bias) and
 * the optimizer; with `--resume`, continue from the newest checkpoint ({@link resumeRun}).
 */
async function setupRun(config: TrainConfig, opts: TrainOptions): Promise<Run> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const say = (s: string) => {
    if (!opts.quiet) log(s);
  };
  const t = config.training;
  const outDir = config.output.dir;
  const bertNoVocab = resolveModelSection(config.model) as Omit<BertConfig, "vocab_size">;
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
  if (t.init_output_bias !== "zeros" && !resumeFrom) objective.initOutputBias(model, trainCellsOf(p), t.init_output_bias);
  const run: Run = {
    config,
    opts,
    t,
    outDir,
    log,
    say,
    p,
    bertConfig,
    encoding,
    objective,
    backend,
    totalSteps,
    splitFingerprint,
    askedWorkers,
    workers,
    model,
    optimizer,
    resumeFrom,
    step: 0,
    tokensSeen: 0,
    position: { epoch: 0, batch: 0 },
    rng: makeRng(`${t.seed}:mask`),
  };
  if (resumeFrom) resumeRun(run, resumeFrom);
  return run;
}

/** The training cells of the data (in training order). */
function trainCellsOf(p: PreparedData): TrainCell[] {
  return Array.from(p.trainIdx, (i) => p.cells[i]);
}

/**
 * Resume: the newest checkpoint's weights, optimizer state, step, data position and generator
 * state; its workers when none are asked for; metrics logged after it are dropped (they come again).
 * @throws Error (model and optimizer freed on an architecture mismatch) when the checkpoint's
 *   architecture, dictionary or split differs from this run's.
 */
function resumeRun(run: Run, resumeFrom: string): void {
  const { model, optimizer, p, t } = run;
  const ck = loadTrainingCheckpoint(resumeFrom, model);
  const diff = architectureDiff(run.bertConfig, ck.config);
  if (diff.length > 0) {
    ck.dispose();
    model.dispose();
    optimizer.dispose();
    throw new Error(`cannot resume from ${resumeFrom}: the architecture differs:\n  ${diff.join("\n  ")}`);
  }
  const st = ck.trainerState;
  const dictNow = p.dataset.manifest.dictionary?.sha256;
  if (st.dictionary_sha256 && dictNow && st.dictionary_sha256 !== dictNow) {
    throw new Error(`cannot resume from ${resumeFrom}: the tokens in ${run.config.data.tokens} use a different dictionary`);
  }
  if (st.split_fingerprint !== run.splitFingerprint) {
    throw new Error(`cannot resume from ${resumeFrom}: the train/validation split differs (data or data.split_seed/val_fraction changed)`);
  }
  ck.applyWeights();
  optimizer.loadState(ck.optimizerState);
  for (const x of Object.values(ck.optimizerState)) x.dispose();
  const wasWorkers = st.workers ?? st.training?.workers ?? 1;
  // the default follows the checkpoint (so a resume is exact) when this machine has the cores for it
  if (run.askedWorkers === undefined && wasWorkers !== run.workers && run.backend.name !== "tensorflow" && run.backend.name !== "webgpu" && wasWorkers <= availableCores()) run.workers = wasWorkers;
  if (st.kernels && st.kernels !== run.backend.kernels) {
    run.say(`note: ${resumeFrom} was trained with matmul kernels "${st.kernels}", this run uses "${run.backend.kernels}"; the losses will not be bit-identical to an uninterrupted run`);
  }
  if (wasWorkers !== run.workers) {
    run.say(
      `note: ${resumeFrom} was trained with workers=${wasWorkers}, this run uses workers=${run.workers}; ` +
        `the batches are the same but the losses will not be bit-identical to an uninterrupted run`,
    );
  }
  run.step = st.step;
  run.tokensSeen = st.tokens_seen ?? 0;
  run.position = st.data_position;
  run.rng = makeRng(`${t.seed}:mask`, st.rng_state);
  // drop metrics logged after the checkpoint (they will be produced again)
  const mfile = path.join(run.outDir, "metrics.jsonl");
  if (fs.existsSync(mfile)) {
    const keep = readMetricsRows(mfile, run.log).filter((r) => r.step <= run.step);
    writeFileAtomic(mfile, keep.map((r) => JSON.stringify(r) + "\n").join(""));
  }
  run.say(`resuming from ${resumeFrom} at step ${run.step}`);
}

/**
 * The run log: `run.json` (config, backend, split, model size, the MFU peak) and the opening lines.
 * @returns the peak FLOP/s MFU is measured against.
 */
function writeRunLog(run: Run): { flops: number; source: string } {
  const { t, p, backend, workers, model } = run;
  let peak = t.peak_flops ? { flops: t.peak_flops, source: "training.peak_flops in the config" } : defaultPeakFlops(backend.name, backend.kernels);
  if (!t.peak_flops && workers > 1 && backend.name !== "tensorflow") {
    // one backend thread per rank: the single-thread peak times the ranks
    peak = { flops: peak.flops * workers, source: `${peak.source}; × ${workers} ranks (training.workers)` };
  }
  const runInfo = {
    config_file: run.config.source,
    config: { model: run.bertConfig, data: run.config.data, training: t, output: run.config.output },
    backend: backend.name,
    backend_package: backend.package,
    kernels: backend.kernels,
    workers,
    total_steps: run.totalSteps,
    n_cells: p.cells.length,
    n_train_cells: p.trainIdx.length,
    n_val_cells: p.valIdx.length,
    split_fingerprint: run.splitFingerprint,
    n_parameters: model.numParameters,
    mfu_peak_flops: peak.flops,
    mfu_peak_source: peak.source,
    tokens: { path: run.config.data.tokens, manifest: p.dataset.manifest },
    ...(hasGeneAxis(p.axis) ? { gene_axis: p.axis.report } : {}),
    ...(p.axis.heldOutTokens ? { held_out_genes: Array.from(p.axis.heldOutTokens) } : {}),
    started: new Date().toISOString(),
  };
  writeFileAtomic(path.join(run.outDir, "run.json"), JSON.stringify(runInfo, null, 2) + "\n");
  run.say(
    `cellfm train: backend ${backend.name} (${backend.package}); ${model.numParameters.toLocaleString("en-US")} parameters; ` +
      `${p.trainIdx.length} training / ${p.valIdx.length} validation cells; ${run.totalSteps} steps` +
      (workers > 1 ? `; ${workers} workers (data-parallel)` : ""),
  );
  run.say(`matmul kernels: ${backend.kernels}`);
  for (const l of p.axis.lines) run.say(l);
  for (const w of p.axis.warnings) run.log(w);
  if (workers > 1 && backend.name === "tensorflow") {
    run.say(`note: training.workers ${workers}: worker threads are meant for the wasm/cpu backends; tensorflow already uses every core`);
  }
  const cg = t.contrastive.group;
  if (workers > 1 && (t.objectives?.contrastive ?? 0) > 0 && (cg === undefined || cg * 2 > t.batch_size)) {
    // shards hold whole groups of negatives (src/train/parallel.ts shardBatch)
    run.say(
      `note: training.contrastive.group ${cg ?? `(the micro-batch, ${t.batch_size} cells)`}: a micro-batch has one group of negatives, so it is not split over the ${workers} workers; ` +
        `set training.contrastive.group to at most ${Math.floor(t.batch_size / workers)} to use them`,
    );
  }
  return peak;
}

/**
 * The checkpointer: `save(dir)` writes the model, optimizer and trainer state (step, data position,
 * generator state) atomically, refusing a diverged model, reading every tensor asynchronously (as
 * webgpu needs); `prune()` keeps the last `keep_last` `checkpoint-<step>` folders.
 */
function checkpointer(run: Run, stream: BatchStream): Checkpointer {
  const { t, p, model, optimizer } = run;
  const cellfmMeta = {
    encoding: run.encoding,
    objective: run.objective.name,
    ...(run.objective.head ? { head: run.objective.head } : {}),
    ...p.axis.spec,
    ...run.objective.spec,
    model_version: p.modelVersion,
    dictionary: p.dataset.manifest.dictionary,
    // value encodings tokenized with --top-genes: `cellfm denoise` reads the same genes per cell
    ...(p.dataset.manifest.top_genes !== undefined ? { top_genes: p.dataset.manifest.top_genes } : {}),
    backend: run.backend.name,
  };
  const state = (): TrainerState => ({
    step: run.step,
    total_steps: run.totalSteps,
    epoch: stream.fractionalEpoch(),
    tokens_seen: run.tokensSeen,
    data_position: stream.position(),
    rng_seed: `${t.seed}:mask`,
    rng_state: run.rng.state(),
    split_fingerprint: run.splitFingerprint,
    dictionary_sha256: p.dataset.manifest.dictionary?.sha256,
    backend: run.backend.name,
    kernels: run.backend.kernels,
    workers: run.workers,
    training: t,
    saved: new Date().toISOString(),
  });
  return {
    async save(dir) {
      // never save a diverged model: a finite loss and gradient can still overflow a weight
      const diverged = (name: string) => new Error(divergedMessage(run.outDir, `weight ${name} non-finite after the update`, run.step));
      const optState = optimizer.exportState();
      try {
        await saveTrainingCheckpoint(dir, { model, cellfm: cellfmMeta, optimizerState: optState, trainerState: state() }, diverged);
      } finally {
        for (const x of Object.values(optState)) x.dispose();
      }
    },
    prune() {
      const cks = listCheckpoints(run.outDir).filter((c) => c.name.startsWith("checkpoint-"));
      for (const c of cks.slice(0, Math.max(0, cks.length - t.keep_last))) fs.rmSync(c.dir, { recursive: true, force: true });
    },
  };
}

/** What {@link checkpointer} returns. */
interface Checkpointer {
  save(dir: string): Promise<void>;
  prune(): void;
}

/**
 * Ctrl-C, SIGTERM (Slurm, Kubernetes), SIGHUP: the loop finishes the current step, saves a
 * checkpoint and returns. A second signal exits at once (128 + its number, the shell's convention).
 * @returns the stop request and `dispose()` (removes the handlers).
 */
function listenForStop(log: (s: string) => void, install: boolean): { requested: boolean; signal?: NodeJS.Signals; dispose(): void } {
  const stop: { requested: boolean; signal?: NodeJS.Signals; dispose(): void } = { requested: false, dispose: () => undefined };
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.requested) process.exit(128 + (os.constants.signals[sig] ?? 2));
    stop.requested = true;
    stop.signal = sig;
    log(`\ncellfm train: ${sig} received; saving a checkpoint after this step (a second signal aborts without saving)`);
  };
  if (install) {
    for (const s of STOP_SIGNALS) process.on(s, onSignal);
    stop.dispose = () => {
      for (const s of STOP_SIGNALS) process.off(s, onSignal);
    };
  }
  return stop;
}

/** The progress bar (a TTY and not quiet), or undefined. */
function progressBar(run: Run): cliProgress.SingleBar | undefined {
  if (run.opts.quiet || process.stderr.isTTY !== true) return undefined;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: "train |{bar}| step {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {eta_formatted}",
      etaBuffer: 50,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(run.totalSteps, run.step, { loss: "-", val: "-", tps: "-" });
  return bar;
}

/** What the step loop works with besides the run. */
interface StepLoop {
  stream: BatchStream;
  valBatches: CollatedBatch[];
  metricsFile: string;
  peak: { flops: number };
  ck: Checkpointer;
  stop: { requested: boolean };
  bar?: cliProgress.SingleBar;
  dp?: DataParallel;
  acc: GradAccumulator;
  /** per-step losses of this call. */
  losses: number[];
}

/** The log interval's sums (reset at every logged step). */
interface Interval {
  loss: number;
  /** sums of each named loss term's per-step training value (cell-level objectives). */
  terms?: Record<string, number>;
  steps: number;
  tokens: number;
  flops: number;
  start: number;
}

/**
 * One optimizer step: `grad_accumulation` micro-batches collated from the run's generator, their
 * gradients (data-parallel over the ranks when `dp`), clipped and applied by AdamW. The losses (and
 * the terms of a head with named terms) stay on the device until the step's one read, together
 * with the gradient norm ({@link readStep}).
 * @throws Error (nothing applied) on a non-finite loss or gradient norm.
 */
async function trainStep(run: Run, s: StepLoop, iv: Interval): Promise<{ loss: number; lr: number; norm: number; terms?: Record<string, number> }> {
  const { t, p, objective, model } = run;
  const micro: MicroLoss[] = [];
  for (let k = 0; k < t.grad_accumulation; k++) {
    const idx = s.stream.next();
    const cells = Array.from(idx, (i) => p.cells[p.trainIdx[i]]);
    const mb = objective.collate(cells, run.rng);
    run.opts.onBatch?.(mb);
    const dropoutSeed = Math.floor(run.rng() * 2147483647);
    let grads: Map<string, tf.Tensor>;
    if (s.dp) {
      // split by cells over the ranks; the combined loss/gradient is the whole micro-batch's
      const r = await s.dp.lossAndGrads(shardBatch(mb, s.dp.size, dropoutSeed));
      grads = r.grads;
      micro.push({ loss: r.loss, ...(r.terms ? { terms: r.terms } : {}) });
    } else {
      const tens = batchTensors(mb);
      try {
        const r = model.lossTensorAndGrads(tens, mb, { training: true, dropoutSeed, terms: true });
        grads = r.grads;
        micro.push({ loss: r.loss, ...(r.terms ? { termTensor: r.terms } : {}) });
      } finally {
        disposeBatch(tens);
      }
    }
    s.acc.add(grads, 1 / t.grad_accumulation);
    iv.tokens += mb.realTokens;
    run.tokensSeen += mb.realTokens;
    // per row of the batch (the contrastive views are rows of their own, not a longer cell)
    iv.flops += trainingFlops(run.bertConfig, rowLengths(mb), objective.headFlops(run.bertConfig, mb));
  }
  const lr = lrAt(run.step, { lr: t.lr, warmupSteps: t.warmup_steps, totalSteps: run.totalSteps, schedule: t.schedule });
  const summed = s.acc.take();
  const read = await readStep(micro, summed);
  const bad = read.losses.find((l) => !Number.isFinite(l));
  if (bad !== undefined) {
    for (const g of summed.values()) g.dispose();
    throw new Error(divergedMessage(run.outDir, `loss ${bad}`, run.step + 1));
  }
  const { grads, norm } = clipByGlobalNorm(summed, t.max_grad_norm, read.norm);
  if (!Number.isFinite(norm)) {
    // stop before the update: the weights (and the checkpoints) stay finite
    for (const g of grads.values()) g.dispose();
    throw new Error(divergedMessage(run.outDir, `gradient norm ${norm}`, run.step + 1));
  }
  run.optimizer.applyGradients(grads, lr);
  for (const g of grads.values()) g.dispose();
  s.dp?.syncWeights(); // replicas take the updated weights before their next shard
  const n = read.losses.length;
  let stepTerms: Record<string, number> | undefined;
  for (const tm of read.terms) stepTerms = addTerms(stepTerms, tm, 1);
  return { loss: read.losses.reduce((a, b) => a + b, 0) / n, lr, norm, ...(stepTerms ? { terms: addTerms(undefined, stepTerms, 1 / n) } : {}) };
}

/** A micro-batch's loss and named terms: on the device (single process) or already read (data-parallel ranks). */
interface MicroLoss {
  loss: number | tf.Scalar;
  /** the terms, read (data-parallel ranks) */
  terms?: Record<string, number>;
  /** the terms on the device, `values` in `names` order (`CellModel.lossTensorAndGrads`) */
  termTensor?: { names: string[]; values: tf.Tensor1D };
}

/**
 * The step's one device read: the micro-batches' losses and terms (tensors, disposed here; numbers
 * from the data-parallel path pass through) and the global gradient norm of `grads`, read together
 * before clipping and the update (the divergence checks need them first).
 */
async function readStep(micro: MicroLoss[], grads: Map<string, tf.Tensor>): Promise<{ losses: number[]; terms: (Record<string, number> | undefined)[]; norm: number }> {
  const onDevice: tf.Tensor[] = [];
  for (const m of micro) {
    if (typeof m.loss !== "number") onDevice.push(m.loss);
    if (m.termTensor) onDevice.push(m.termTensor.values);
  }
  onDevice.push(squaredNormTensor(grads));
  try {
    const v = await readValues(onDevice);
    let k = 0;
    const losses: number[] = [];
    const terms: (Record<string, number> | undefined)[] = [];
    for (const m of micro) {
      losses.push(typeof m.loss === "number" ? m.loss : v[k++]);
      terms.push(m.termTensor ? Object.fromEntries(m.termTensor.names.map((name) => [name, v[k++]])) : m.terms);
    }
    return { losses, terms, norm: Math.sqrt(v[k]) };
  } finally {
    tf.dispose(onDevice);
  }
}

/** Real tokens of each row of a collated batch `[batch]`. */
function rowLengths(b: CollatedBatch): Int32Array {
  const out = new Int32Array(b.batch);
  for (let r = 0; r < b.batch; r++) for (let i = 0; i < b.seqLen; i++) out[r] += b.attentionMask[r * b.seqLen + i] > 0 ? 1 : 0;
  return out;
}

/** `acc` + `scale` × `terms`, per term name (`acc` when `terms` is undefined). */
function addTerms(acc: Record<string, number> | undefined, terms: Record<string, number> | undefined, scale: number): Record<string, number> | undefined {
  if (!terms) return acc;
  const out = { ...acc };
  for (const [k, v] of Object.entries(terms)) out[k] = (out[k] ?? 0) + scale * v;
  return out;
}

/** Log a step: `onStep`, and on log / evaluation / last steps a metrics.jsonl row (the interval's mean loss), the bar or a line. */
function logStep(run: Run, s: StepLoop, iv: Interval, m: StepMetrics, lastVal: number | undefined, valTerms?: Record<string, number>): void {
  run.opts.onStep?.(m);
  const { step } = m;
  if (step % run.t.log_every === 0 || m.val_loss !== undefined || step === run.totalSteps) {
    const row = { ...m, loss: iv.loss / iv.steps, ...termColumns(addTerms(undefined, iv.terms, 1 / iv.steps), "train_"), ...termColumns(valTerms) };
    appendChecked(s.metricsFile, JSON.stringify(row) + "\n");
    s.bar?.update(step, {
      loss: row.loss.toFixed(3),
      val: lastVal !== undefined ? lastVal.toFixed(3) : "-",
      tps: Math.round(row.tokens_per_s).toString(),
    });
    if (!s.bar) {
      run.say(
        `step ${step}/${run.totalSteps} epoch ${row.epoch.toFixed(2)} loss ${row.loss.toFixed(4)}` +
          (m.val_loss !== undefined ? ` val_loss ${m.val_loss.toFixed(4)}` : "") +
          ` lr ${m.lr.toExponential(2)} grad_norm ${m.grad_norm.toFixed(3)} ${Math.round(row.tokens_per_s)} tok/s MFU ${(row.mfu * 100).toFixed(1)}%`,
      );
    }
    Object.assign(iv, { loss: 0, terms: undefined, steps: 0, tokens: 0, flops: 0, start: performance.now() });
  } else {
    s.bar?.update(step);
  }
}

/**
 * The step loop: optimizer steps until `totalSteps`, a stop request or `stopAfter`; held-out loss
 * every `eval_every`, metrics every `log_every`, a checkpoint every `save_every`.
 * @returns whether it stopped early.
 */
async function runSteps(run: Run, s: StepLoop): Promise<boolean> {
  const { t } = run;
  const iv: Interval = { loss: 0, steps: 0, tokens: 0, flops: 0, start: performance.now() };
  let lastVal: number | undefined;
  let stepsThisCall = 0;
  while (run.step < run.totalSteps) {
    if (s.stop.requested || (run.opts.stopAfter !== undefined && stepsThisCall >= run.opts.stopAfter)) return true;
    const { loss, lr, norm, terms } = await trainStep(run, s, iv);
    run.step++;
    stepsThisCall++;
    s.losses.push(loss);
    iv.loss += loss;
    iv.terms = addTerms(iv.terms, terms, 1);
    iv.steps++;
    const step = run.step;
    let valLoss: number | undefined;
    let valTerms: Record<string, number> | undefined;
    if (t.eval_every > 0 && step % t.eval_every === 0 && step < run.totalSteps && s.valBatches.length > 0) {
      valLoss = (await evaluateLoss(run.model, s.valBatches)).loss;
      lastVal = valLoss;
      if (run.objective instanceof CellObjective) valTerms = await evaluateTerms(run.model, s.valBatches);
    }
    const secs = (performance.now() - iv.start) / 1000;
    const m: StepMetrics = {
      step,
      epoch: Number(s.stream.fractionalEpoch().toFixed(4)),
      tokens: run.tokensSeen,
      loss,
      lr,
      grad_norm: norm,
      tokens_per_s: iv.tokens / Math.max(secs, 1e-9),
      mfu: iv.flops / Math.max(secs, 1e-9) / s.peak.flops,
    };
    if (valLoss !== undefined) m.val_loss = valLoss;
    logStep(run, s, iv, m, lastVal, valTerms);
    if (t.save_every > 0 && step % t.save_every === 0 && step < run.totalSteps) {
      await s.ck.save(path.join(run.outDir, `checkpoint-${step}`));
      s.ck.prune();
    }
    // let signals (Ctrl-C) and other events in
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

/**
 * The held-out loss of the untrained model (step 0), the start of the learning curve: measured on a
 * fresh run (and logged), read back from metrics.jsonl on a resumed one.
 */
async function initialLosses(run: Run, valBatches: CollatedBatch[], heldOutBatches: CollatedBatch[], metricsFile: string): Promise<Initial> {
  const out: Initial = {};
  if (!run.resumeFrom && heldOutBatches.length > 0) out.heldOutGenes = (await evaluateLoss(run.model, heldOutBatches)).loss;
  if (!run.resumeFrom && valBatches.length > 0) {
    out.val = (await evaluateLoss(run.model, valBatches)).loss;
    out.terms = run.objective instanceof CellObjective ? await evaluateTerms(run.model, valBatches) : undefined;
    appendChecked(metricsFile, JSON.stringify({ step: 0, epoch: 0, tokens: 0, val_loss: out.val, ...termColumns(out.terms) }) + "\n");
    run.say(`step 0 val_loss ${out.val.toFixed(4)} (untrained)`);
  } else {
    for (const r of readMetricsRows(metricsFile, run.log)) {
      if (r.step === 0 && r.val_loss !== undefined) out.val = r.val_loss;
      if (r.step === 0) {
        const tv = Object.entries(r).filter(([k]) => k.startsWith("val_") && k !== "val_loss");
        if (tv.length) out.terms = Object.fromEntries(tv.map(([k, v]) => [k.slice(4), v]));
      }
    }
  }
  return out;
}

/** The untrained model's held-out losses (step 0): the objective's, each cell-level term's, the held-out genes'. */
interface Initial {
  val?: number;
  terms?: Record<string, number>;
  heldOutGenes?: number;
}

/** metrics.jsonl columns of the cell-level terms' losses: held-out `val_<term>`, training `train_<term>`. */
function termColumns(terms: Record<string, number> | undefined, prefix = "val_"): Record<string, number> {
  return terms ? Object.fromEntries(Object.entries(terms).map(([k, v]) => [`${prefix}${k}`, v])) : {};
}

/**
 * The final evaluation: the model's held-out loss next to the objective's baseline (and, with
 * held-out genes, both at those genes' positions) → `eval.json` and the last metrics.jsonl row.
 */
async function finalEvaluation(
  run: Run,
  stream: BatchStream,
  valBatches: CollatedBatch[],
  heldOutBatches: CollatedBatch[],
  initial: Initial,
  metricsFile: string,
): Promise<EvalResult> {
  const { p, t, objective, model } = run;
  const ev = await evaluateLoss(model, valBatches);
  const base = objective.baseline(trainCellsOf(p), valBatches);
  const evalResult: EvalResult = {
    step: run.step,
    kernels: run.backend.kernels,
    objective: objective.name,
    encoding: run.encoding,
    model_loss: ev.loss,
    baseline_loss: base.loss,
    baseline_name: base.name,
    ...base.extra,
    initial_loss: initial.val,
    improvement: base.loss - ev.loss,
    n_cells: Math.min(p.valIdx.length, t.eval_cells),
    n_masked: ev.n,
    baseline: base.description,
    ...(hasGeneAxis(p.axis) ? { gene_axis: p.axis.report } : {}),
  };
  if (objective instanceof CellObjective) {
    // every term of training.objectives on the held-out cells, next to its own baseline
    const now = await evaluateTerms(model, valBatches);
    const bases = objective.termBaselines(trainCellsOf(p), valBatches);
    evalResult.terms = Object.fromEntries(
      Object.entries(now).map(([k, v]) => [
        k,
        {
          weight: objective.o.objectives[k] ?? 0,
          model_loss: v,
          ...(initial.terms?.[k] !== undefined ? { initial_loss: initial.terms[k] } : {}),
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
      ...(initial.heldOutGenes !== undefined ? { initial_loss: initial.heldOutGenes } : {}),
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
  writeFileAtomic(path.join(run.outDir, "eval.json"), JSON.stringify(evalResult, null, 2) + "\n");
  appendChecked(
    metricsFile,
    JSON.stringify({
      step: run.step,
      epoch: stream.fractionalEpoch(),
      tokens: run.tokensSeen,
      val_loss: ev.loss,
      [`${base.name}_val_loss`]: base.loss,
      ...(evalResult.held_out_genes?.model_loss !== undefined
        ? { held_out_gene_val_loss: evalResult.held_out_genes.model_loss, [`held_out_gene_${evalResult.held_out_genes.baseline_name}_val_loss`]: evalResult.held_out_genes.baseline_loss }
        : {}),
    }) + "\n",
  );
  return evalResult;
}

/**
 * Train (or resume) a run into `config.output.dir` (see the module comment), holding the folder's
 * lock for the whole run; a previous run replaced with `--force` is removed once the new run has a
 * checkpoint, and put back when the new run fails before it has one (`./output.ts`).
 * @throws Error before anything is written for bad options, data or config; during training on a
 *   diverged loss, gradient or weight (naming the last good checkpoint).
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

/** The inputs a run's output folder may not overlap. */
function runInputs(config: TrainConfig): { path: string; label: string }[] {
  return [{ path: config.data.tokens, label: `${config.source}: data.tokens` }];
}

/** One run in its locked output folder: set up (or resume), log, step loop with checkpoints and stop signals, final evaluation. */
async function trainRun(config: TrainConfig, opts: TrainOptions): Promise<TrainResult> {
  const run = await setupRun(config, opts);
  const { t, p, model, optimizer, outDir, backend } = run;
  const peak = writeRunLog(run);
  const stream = new BatchStream(p.trainLengths, { batchSize: t.batch_size, maxTokensPerBatch: t.max_tokens_per_batch, seed: t.seed }, run.position);
  const valBatches = validationBatches(p, config, run.objective);
  const heldOutBatches = heldOutGeneBatches(p, config, run.objective);
  if (p.axis.heldOut && heldOutBatches.length === 0) {
    run.log(`warning: no held-out cell of the first ${t.eval_cells} has a held-out gene in its context; eval.json will have no held-out-gene loss`);
  }
  const metricsFile = path.join(outDir, "metrics.jsonl");
  const ck = checkpointer(run, stream);
  const stop = listenForStop(run.log, opts.handleSigint ?? true);
  const bar = progressBar(run);
  // data-parallel replicas start in the background (about a second) while the main thread evaluates
  const dpStart = run.workers > 1 ? DataParallel.start(model, { workers: run.workers, backend: backend.name as BackendChoice }) : undefined;
  dpStart?.catch(() => undefined); // awaited below; a failure must not surface as unhandled first
  const s: StepLoop = { stream, valBatches, metricsFile, peak, ck, stop, bar, acc: new GradAccumulator(), losses: [] };
  let interrupted = false;
  let initial: Initial;
  try {
    initial = await initialLosses(run, valBatches, heldOutBatches, metricsFile);
    if (dpStart) {
      s.dp = await dpStart;
      s.dp.syncWeights();
    }
    interrupted = await runSteps(run, s);
  } catch (e) {
    optimizer.dispose();
    model.dispose();
    throw e;
  } finally {
    s.acc.dispose();
    bar?.stop();
    stop.dispose();
    // stop the worker threads on every exit path (a live worker keeps the process running)
    await dpStart?.then((d) => d.dispose(), () => undefined);
  }

  const { step, totalSteps } = run;
  try {
    if (interrupted) {
      const dir = path.join(outDir, `checkpoint-${step}`);
      if (!fs.existsSync(dir)) await ck.save(dir);
      run.say(`cellfm train: stopped at step ${step}/${totalSteps}; checkpoint ${dir}; continue with --resume`);
      return { outputDir: outDir, checkpoint: dir, step, totalSteps, interrupted: true, signal: stop.signal, backend, losses: s.losses };
    }
    const finalDir = path.join(outDir, "final");
    await ck.save(finalDir);
    const evalResult = await finalEvaluation(run, stream, valBatches, heldOutBatches, initial, metricsFile);
    return { outputDir: outDir, checkpoint: finalDir, step, totalSteps, interrupted: false, backend, eval: evalResult, losses: s.losses };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
