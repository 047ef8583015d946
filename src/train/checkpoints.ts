/**
 * Training checkpoints on top of the model's checkpoint format (`src/model/checkpoint.ts`):
 * adds the optimizer state (`optimizer.safetensors`, moments in the same HF layout as the weights)
 * and `cellfm_state.json` (step, data position, RNG state; `trainer_state.json` in older checkpoints) needed for an exact `--resume`, and
 * finds the newest complete checkpoint of a run.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel } from "../model/bert.js";
import { CELLFM_STATE_FILE, type CellfmMeta, cellfmVersion, LEGACY_STATE_FILE, readCheckpoint, writeCheckpoint } from "../model/checkpoint.js";
import type { BertConfig } from "../model/config.js";
import { firstNonFinite } from "../finite.js";
import { throwIfWebGPUFailed } from "../webgpu.js";
import type { TrainingSection } from "./config.js";

/** `cellfm_state.json`: everything besides weights and optimizer moments needed to resume exactly. */
export interface TrainerState {
  /** Optimizer steps done. */
  step: number;
  /** Schedule length of the run that wrote it. */
  total_steps: number;
  /** Fractional epoch reached. */
  epoch: number;
  /** Real (non-pad) training tokens seen up to `step` (absent in older checkpoints). */
  tokens_seen?: number;
  /** Next batch to draw: epoch number and batch index in that epoch's length-grouped plan. */
  data_position: { epoch: number; batch: number };
  /** Seed and saved state of the masking/dropout generator (seedrandom Alea). */
  rng_seed: string;
  rng_state: object;
  /** Fingerprint of the validation cell indices (resume refuses a different split). */
  split_fingerprint: string;
  /** SHA-256 of the token dictionary of the training data. */
  dictionary_sha256?: string;
  /** tfjs backend that wrote it. */
  backend: string;
  /** What ran its matmuls (`BackendInfo.kernels`; absent in older checkpoints). */
  kernels?: string;
  /** Data-parallel ranks of the run that wrote it (`training.workers`; absent in older checkpoints = 1). */
  workers?: number;
  /** The `training:` section in effect. */
  training: TrainingSection;
  /** ISO 8601 time of writing. */
  saved: string;
}

/** One checkpoint folder of a run. */
export interface CheckpointEntry {
  /** Folder name: `checkpoint-<step>` or `final`. */
  name: string;
  /** Absolute path. */
  dir: string;
  /** Optimizer steps recorded in it. */
  step: number;
}

/**
 * Complete checkpoints in a run folder, oldest first (by step; `final` after a `checkpoint-<step>`
 * of the same step). Temporary folders of interrupted writes (`*.tmp-*`, `*.old-*`) are ignored.
 * @throws Error when `final/` exists without a readable `cellfm_state.json` (or an older `trainer_state.json`).
 */
export function listCheckpoints(runDir: string): CheckpointEntry[] {
  if (!fs.existsSync(runDir)) return [];
  const out: CheckpointEntry[] = [];
  for (const name of fs.readdirSync(runDir)) {
    const dir = path.join(runDir, name);
    if (!fs.statSync(dir).isDirectory()) continue;
    const m = /^checkpoint-(\d+)$/.exec(name);
    if (m) out.push({ name, dir: path.resolve(dir), step: Number(m[1]) });
    else if (name === "final") {
      const f = fs.existsSync(path.join(dir, CELLFM_STATE_FILE)) || !fs.existsSync(path.join(dir, LEGACY_STATE_FILE)) ? path.join(dir, CELLFM_STATE_FILE) : path.join(dir, LEGACY_STATE_FILE);
      let step: number;
      try {
        step = Number((JSON.parse(fs.readFileSync(f, "utf8")) as { step: number }).step);
      } catch (e) {
        throw new Error(`${f}: missing or corrupt trainer state (${(e as Error).message}); the checkpoint cannot be resumed`);
      }
      out.push({ name, dir: path.resolve(dir), step });
    }
  }
  return out.sort((a, b) => a.step - b.step || (a.name === "final" ? 1 : b.name === "final" ? -1 : 0));
}

function hfLayout(model: CellModel, state: Record<string, tf.Tensor>, toHF: boolean): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [k, t] of Object.entries(state)) {
    const param = k.replace(/\.(exp_avg|exp_avg_sq)$/, "");
    if (param !== k && model.weights.has(param) && model.isTransposedInHF(param)) {
      out[k] = tf.transpose(t);
      t.dispose();
    } else out[k] = t;
  }
  void toHF; // a 2-D transpose is its own inverse: the same code maps both ways
  return out;
}

/**
 * Write a training checkpoint atomically (replacing an existing folder of the same name, e.g.
 * `final/`), every tensor read asynchronously with all reads issued together (the webgpu backend
 * has no synchronous read in Node); the same files on every backend.
 * @param c.optimizerState the optimizer's exported tensors (internal layout; not disposed here).
 * @param nonFinite when given, called with the name of the first weight holding NaN/±Inf, and its
 *   Error thrown before anything is written (a diverged model is never saved).
 * @throws Error when the WebGPU device reported an error (the values read would be wrong).
 */
export async function saveTrainingCheckpoint(
  dir: string,
  c: {
    model: CellModel;
    cellfm: { encoding: string; objective: string; model_version?: string; dictionary?: { name: string; sha256: string }; backend: string } & Record<string, unknown>;
    optimizerState: Record<string, tf.Tensor>;
    trainerState: TrainerState;
  },
  nonFinite?: (weight: string) => Error,
): Promise<void> {
  const copies: Record<string, tf.Tensor> = {};
  for (const [k, t] of Object.entries(c.optimizerState)) copies[k] = tf.clone(t);
  const hf = hfLayout(c.model, copies, true);
  try {
    // a tensor read with data() keeps its values on the host, so writeCheckpoint's dataSync() finds them there
    const [weights] = await Promise.all([c.model.exportWeightsAsync(), ...Object.values(hf).map((t) => t.data())]);
    throwIfWebGPUFailed();
    if (nonFinite) {
      for (const [name, w] of Object.entries(weights)) if (firstNonFinite(w.data) >= 0) throw nonFinite(name);
    }
    const meta: CellfmMeta = {
      ...c.cellfm,
      model_version: (c.cellfm.model_version ?? "V1") as "V1" | "V2",
      dictionary: c.cellfm.dictionary ?? { name: "", sha256: "" },
      cellfm_version: cellfmVersion(),
      created: new Date().toISOString(),
    };
    writeCheckpoint(dir, { model: c.model, cellfm: meta, optimizerState: hf, trainerState: c.trainerState, weights }, { force: true });
  } finally {
    for (const t of Object.values(hf)) t.dispose();
  }
}

/** A checkpoint opened for resuming. */
export interface ResumableCheckpoint {
  config: BertConfig;
  cellfm: CellfmMeta;
  trainerState: TrainerState;
  /** Optimizer tensors in the optimizer's internal layout (caller disposes). */
  optimizerState: Record<string, tf.Tensor>;
  /** Copy the checkpoint's weights into the target model (call after checking the architecture). */
  applyWeights(): void;
  /** Free the loaded weights and optimizer tensors without applying them. */
  dispose(): void;
}

/**
 * Open a checkpoint for `--resume` into `target`.
 * @throws Error naming the folder/file when it is missing, half-written or lacks the optimizer or
 *   trainer state (a checkpoint exported for embedding only cannot be resumed).
 */
export function loadTrainingCheckpoint(dir: string, target: CellModel): ResumableCheckpoint {
  const ck = readCheckpoint(dir);
  const fail = (what: string): never => {
    ck.model.dispose();
    if (ck.optimizerState) for (const t of Object.values(ck.optimizerState)) t.dispose();
    throw new Error(`checkpoint ${dir} has no ${what}; it cannot be resumed (incomplete or not written by cellfm train)`);
  };
  if (!ck.trainerState) fail(CELLFM_STATE_FILE);
  if (!ck.optimizerState) fail("optimizer.safetensors");
  const ts = ck.trainerState as unknown as TrainerState;
  if (typeof ts.step !== "number" || !ts.data_position || !ts.rng_state) fail(`valid ${CELLFM_STATE_FILE} (step, data_position, rng_state)`);
  const loaded = ck.model;
  const opt = hfLayout(target, ck.optimizerState!, false);
  return {
    config: ck.config,
    cellfm: ck.cellfm,
    trainerState: ts,
    optimizerState: opt,
    applyWeights() {
      // variable to variable on the device (same architecture, checked by the caller): no host read,
      // which the webgpu backend could not do synchronously
      for (const [name, v] of target.weights) {
        const src = loaded.weights.get(name);
        if (!src || src.shape.join("x") !== v.shape.join("x")) {
          throw new Error(`checkpoint ${dir}: weight ${name} ${src ? `has shape [${src.shape}] but the model needs [${v.shape}]` : "is missing"}`);
        }
        v.assign(src);
      }
      loaded.dispose();
    },
    dispose() {
      loaded.dispose();
      for (const t of Object.values(opt)) t.dispose();
    },
  };
}
