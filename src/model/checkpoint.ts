/**
 * cellfm checkpoints: a folder readable by HuggingFace `transformers` (`BertForMaskedLM.from_pretrained`)
 * and by cellfm for exact resume and embedding.
 *
 *   config.json            HF `BertConfig` fields + `architectures`, `model_type`, `transformers_version`
 *                          and a `cellfm` block
 *   model.safetensors      weights under HF `BertForMaskedLM` names, PyTorch layout (dense `[out, in]`)
 *   optimizer.safetensors  optimizer state tensors (optional)
 *   cellfm_state.json      step, data position, RNG state, metrics (optional; cellfm's own, so HF
 *                          Trainer's `resume_from_checkpoint`, which reads `trainer_state.json`, never
 *                          mistakes it for its own; checkpoints before this change wrote it under that
 *                          name and are still read)
 *   token_dictionary_<corpus>.tsv, gene_median_<corpus>.tsv, ensembl_mapping_<corpus>.tsv
 *                          the Geneformer dictionaries the model was trained with (bundled ones whose
 *                          SHA-256 matches `cellfm.dictionary`), so the folder is self-contained
 *
 * The folder is written under a temporary sibling name and renamed when complete (`src/io.ts`), so
 * an interrupted write never leaves a checkpoint under the final name.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { assertWritable, commitDir, packagePath, tempDirFor, writeFileAtomic } from "../io.js";
import { type CellModel, type HFTensor } from "./bert.js";
import { type BertConfig, validateBertConfig } from "./config.js";
import { buildModel, modelSpecFrom } from "./factory.js";
import { assertFinite } from "../finite.js";
import { readSafetensors, type SafeTensor, toFloat32, writeSafetensors } from "./safetensors.js";

/** The data registry and provenance that travel inside a checkpoint (`config.json` → `cellfm`). */
export interface CellfmMeta {
  /** Input encoding, e.g. "geneformer-rank-value". */
  encoding: string;
  /** Pretraining objective, e.g. "mlm". */
  objective: string;
  /** Head options of the objective (e.g. `{ likelihood: "zinb" }`), when it has any. */
  head?: Record<string, unknown>;
  /** Geneformer dictionary generation: "V1" (gc30M, 25,426 tokens) or "V2" (gc104M, 20,275 tokens). */
  model_version: "V1" | "V2";
  /** Token dictionary the model was trained with: name and SHA-256 of its file. */
  dictionary: { name: string; sha256: string };
  /** tfjs backend that wrote the checkpoint ("wasm", "cpu", "tensorflow"). */
  backend: string;
  /** cellfm package version that wrote it. */
  cellfm_version: string;
  /** ISO 8601 creation time. */
  created: string;
  /** Free extra fields (gene list, obs keys, training config, ...). */
  [extra: string]: unknown;
}

/** What {@link writeCheckpoint} stores. */
export interface CheckpointContents {
  model: CellModel;
  cellfm: CellfmMeta;
  /** Optimizer tensors by name (e.g. `m/<weight name>`), float32 or int32. */
  optimizerState?: Record<string, tf.Tensor>;
  /** JSON-serialisable training state (step, data position, RNG state, metrics), written as `cellfm_state.json`. */
  trainerState?: object;
  /**
   * The model's weights already read to the host (`model.exportWeightsAsync()`), written instead of
   * a synchronous `model.exportWeights()` (which the webgpu backend cannot do in Node).
   */
  weights?: Record<string, HFTensor>;
}

/** What {@link readCheckpoint} returns. */
export interface LoadedCheckpoint {
  config: BertConfig;
  cellfm: CellfmMeta;
  /** The model the `architectures` + `cellfm` block describe (built by `./factory.ts`). */
  model: CellModel;
  optimizerState?: Record<string, tf.Tensor>;
  trainerState?: Record<string, unknown>;
}

/** Version of this cellfm package (from package.json), "unknown" if unreadable. */
export function cellfmVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * HF `config.json` object for a model + cellfm block.
 * @param architecture HF class name of the model (`model.spec.architecture`, default "BertForMaskedLM")
 */
export function hfConfigJson(config: BertConfig, cellfm: CellfmMeta, architecture = "BertForMaskedLM"): Record<string, unknown> {
  return {
    architectures: [architecture],
    model_type: "bert",
    ...config,
    position_embedding_type: "absolute",
    torch_dtype: "float32",
    transformers_version: TRANSFORMERS_VERSION,
    cellfm,
  };
}

/**
 * The `transformers` release whose `BertConfig` / `BertForMaskedLM` format the folder follows
 * (`config.json` keys, weight names). HF writes its own version there; `from_pretrained` only
 * compares it in warnings.
 */
export const TRANSFORMERS_VERSION = "4.46.3";

/** cellfm's training state in a checkpoint (HF Trainer's own is `trainer_state.json`). */
export const CELLFM_STATE_FILE = "cellfm_state.json";

/** Older checkpoints' name for {@link CELLFM_STATE_FILE}; read when it holds cellfm's fields. */
export const LEGACY_STATE_FILE = "trainer_state.json";

/**
 * The bundled dictionary files that {@link writeCheckpoint} copies into a checkpoint: those of
 * `meta.model_version` when their token dictionary's SHA-256 is `meta.dictionary.sha256` (an empty or
 * absent sha256 means the bundled one); none for another dictionary.
 */
function dictionaryFiles(meta: CellfmMeta): string[] {
  const corpus = meta.model_version === "V2" ? "gc104M" : meta.model_version === "V1" ? "gc30M" : undefined;
  if (!corpus) return [];
  const dir = packagePath("data", "geneformer");
  const tokens = path.join(dir, `token_dictionary_${corpus}.tsv`);
  if (!fs.existsSync(tokens)) return [];
  const want = meta.dictionary?.sha256;
  if (want && createHash("sha256").update(fs.readFileSync(tokens)).digest("hex") !== want) return [];
  return [tokens, path.join(dir, `gene_median_${corpus}.tsv`), path.join(dir, `ensembl_mapping_${corpus}.tsv`)].filter((f) => fs.existsSync(f));
}

/** Read a checkpoint's cellfm state: `cellfm_state.json`, else an older `trainer_state.json` with cellfm's fields (not HF Trainer's). */
function readCellfmState(dir: string): Record<string, unknown> | undefined {
  const file = path.join(dir, CELLFM_STATE_FILE);
  if (fs.existsSync(file)) return readJson(file, "cellfm training state");
  const legacy = path.join(dir, LEGACY_STATE_FILE);
  if (!fs.existsSync(legacy)) return undefined;
  const st = readJson(legacy, "trainer state");
  return "rng_state" in st || "data_position" in st || "training" in st ? st : undefined; // HF Trainer's own state has none of these
}

function tensorToSafe(t: tf.Tensor, name: string): SafeTensor {
  if (t.dtype === "float32") return { dtype: "F32", shape: [...t.shape], data: t.dataSync() as Float32Array };
  if (t.dtype === "int32") return { dtype: "I32", shape: [...t.shape], data: t.dataSync() as Int32Array };
  throw new Error(`optimizer state ${name} has dtype ${t.dtype}; only float32/int32 can be saved`);
}

/**
 * Write a checkpoint folder atomically (temporary sibling folder, then rename).
 * @throws Error if `dir` exists and `force` is not set (nothing is written), or on an unsaveable tensor.
 */
export function writeCheckpoint(dir: string, ck: CheckpointContents, opts: { force?: boolean } = {}): void {
  assertWritable(dir, opts.force ?? false, { command: "checkpoint", kind: "dir" });
  const tmp = tempDirFor(dir, "checkpoint");
  try {
    writeFileAtomic(path.join(tmp, "config.json"), JSON.stringify(hfConfigJson(ck.model.config, ck.cellfm, ck.model.spec.architecture), null, 2) + "\n");
    const weights: Record<string, SafeTensor> = {};
    for (const [name, t] of Object.entries(ck.weights ?? ck.model.exportWeights())) weights[name] = { dtype: "F32", shape: t.shape, data: t.data };
    writeSafetensors(path.join(tmp, "model.safetensors"), weights, { format: "pt" });
    if (ck.optimizerState) {
      const opt: Record<string, SafeTensor> = {};
      for (const [name, t] of Object.entries(ck.optimizerState)) opt[name] = tensorToSafe(t, name);
      writeSafetensors(path.join(tmp, "optimizer.safetensors"), opt, { format: "cellfm" });
    }
    if (ck.trainerState) writeFileAtomic(path.join(tmp, CELLFM_STATE_FILE), JSON.stringify(ck.trainerState, null, 2) + "\n");
    for (const f of dictionaryFiles(ck.cellfm)) fs.copyFileSync(f, path.join(tmp, path.basename(f)));
    commitDir(tmp, dir, opts.force ?? false, { command: "checkpoint" });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function readJson(file: string, what: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`${file}: missing (${what})`);
  try {
    const v = JSON.parse(fs.readFileSync(file, "utf8"));
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a JSON object");
    return v;
  } catch (e) {
    // JSON.parse's message quotes the file's text: say only what is wrong
    throw new Error(`${file}: corrupt ${what}: ${e instanceof SyntaxError ? "not valid JSON" : (e as Error).message}`);
  }
}

/** Default cellfm block for an imported HF checkpoint that has none (e.g. Geneformer's published models). */
function importedMeta(config: BertConfig): CellfmMeta {
  const v2 = config.vocab_size === 20275;
  return {
    encoding: "geneformer-rank-value",
    objective: "mlm",
    model_version: v2 ? "V2" : "V1",
    dictionary: { name: v2 ? "gc104M" : "gc30M", sha256: "" },
    backend: "",
    cellfm_version: "",
    created: "",
    imported: true,
  };
}

const CORRUPT_HINT = "the file is corrupt (e.g. bit rot) or was written by a diverged run; use another checkpoint";

/**
 * Read a checkpoint folder (cellfm's or a HuggingFace `BertForMaskedLM` folder with
 * `model.safetensors`). Ignores `cls.predictions.decoder.*` (tied) and `bert.embeddings.position_ids`.
 * F16/BF16/F64 weights are converted to float32.
 * @throws Error naming the file for: a missing folder (mentioning a leftover half-written
 *   `<dir>.tmp-*` folder if there is one), a folder that is itself an interrupted write, a missing or
 *   corrupt `config.json`, an invalid config or `cellfm` block (naming the key), a missing/truncated/corrupt
 *   `model.safetensors`, a missing weight or a weight whose shape does not match the config, or a
 *   weight or optimizer moment with a NaN/±Inf (naming the tensor).
 */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const abs = path.resolve(dir);
  if (/\.tmp-\d+-\d+$/.test(abs)) {
    throw new Error(`${dir}: this is a half-written checkpoint (an interrupted write left this temporary folder); use a complete checkpoint`);
  }
  if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) {
    const parent = path.dirname(abs), base = path.basename(abs);
    const partial = fs.existsSync(parent) ? fs.readdirSync(parent).filter((f) => f.startsWith(`${base}.tmp-`)) : [];
    const hint = partial.length
      ? `; found a half-written checkpoint ${path.join(path.dirname(dir), partial[0])} (the write was interrupted)`
      : "";
    throw new Error(`checkpoint folder ${dir} not found${hint}`);
  }
  const cfgFile = path.join(abs, "config.json");
  const raw = readJson(cfgFile, "model config");
  let config: BertConfig;
  try {
    config = validateBertConfig(raw);
  } catch (e) {
    throw new Error(`${cfgFile}: ${(e as Error).message}`);
  }
  const cellfm = (raw.cellfm as CellfmMeta | undefined) ?? importedMeta(config);
  let spec: ReturnType<typeof modelSpecFrom>;
  try {
    spec = modelSpecFrom(cellfm, raw.architectures);
  } catch (e) {
    throw new Error(`${cfgFile}: ${(e as Error).message}`);
  }
  const modelFile = path.join(abs, "model.safetensors");
  if (!fs.existsSync(modelFile)) throw new Error(`${modelFile}: missing (model weights); the checkpoint is incomplete`);
  const st = readSafetensors(modelFile);
  const hf: Record<string, HFTensor> = {};
  for (const [name, t] of Object.entries(st.tensors)) {
    if (name === "bert.embeddings.position_ids") continue; // int64 buffer in older HF files
    hf[name] = { shape: t.shape, data: toFloat32(t, `${modelFile}: ${name}`) };
    assertFinite(hf[name].data, `${modelFile}: tensor ${name}`, CORRUPT_HINT);
  }
  const model = buildModel(config, spec);
  try {
    model.importWeights(hf, modelFile);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const out: LoadedCheckpoint = { config, cellfm, model };
  const optFile = path.join(abs, "optimizer.safetensors");
  if (fs.existsSync(optFile)) {
    const o = readSafetensors(optFile);
    out.optimizerState = {};
    for (const [name, t] of Object.entries(o.tensors)) {
      if (t.dtype !== "I32") assertFinite(toFloat32(t, `${optFile}: ${name}`), `${optFile}: tensor ${name}`, CORRUPT_HINT);
      out.optimizerState[name] =
        t.dtype === "I32" ? tf.tensor(t.data as Int32Array, t.shape, "int32") : tf.tensor(toFloat32(t, `${optFile}: ${name}`), t.shape, "float32");
    }
  }
  const state = readCellfmState(abs);
  if (state) out.trainerState = state;
  return out;
}
