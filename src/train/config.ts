/**
 * The training configuration (`cellfm train --config X.yaml`): a YAML file validated with zod.
 *
 * Every error names the file and the key path, e.g.
 * `configs/x.yaml: training.lr: expected a positive number, got "abc"`; unknown keys are rejected
 * by name (a typo such as `trainig:` never silently falls back to a default).
 *
 * Sections:
 * - `model`: HuggingFace `BertConfig` fields (`hidden_size`, `num_hidden_layers`, ...), or
 *   `preset: geneformer-v1-6l` plus overrides. `vocab_size` defaults to the token dictionary's size
 *   (V1 25,426, V2 20,275) and is filled in by the training loop from the tokenized dataset.
 * - `data`: `tokens` (a folder written by `cellfm tokenize`), `max_length` (truncation),
 *   `val_fraction`, `split_seed`.
 * - `training`: MLM objective and AdamW/schedule hyperparameters (defaults follow Geneformer V1's
 *   pretraining script and HuggingFace `TrainingArguments`; see {@link TrainingSection}).
 * - `output.dir`, `backend`.
 *
 * **Relative paths** (`data.tokens`, `output.dir`) are resolved against the **current working
 * directory**, not against the config file's folder, so `cellfm train --config configs/demo.yaml`
 * run from the repository root reads `runs/demo/tokens` there (like every other `cellfm` path
 * argument).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";
import { GENEFORMER_V1_12L, GENEFORMER_V1_6L, type BertConfig } from "../model/config.js";
import { LIKELIHOODS } from "../model/likelihoods.js";
import { DEFAULT_NOISE, DOWNSAMPLE_METHODS } from "./downsample.js";
import { OBJECTIVE_NAMES } from "./objectives/names.js";
import { BOTTLENECK_DECODERS, CELL_OBJECTIVES, CONTRASTIVE_PROJECTIONS, DEFAULT_CONTRASTIVE_TEMPERATURE, POOLINGS } from "../model/cell-heads.js";

/** Token objectives (`training.objective`; also keys of `training.objectives`): the objectives registry's list. */
export const TOKEN_OBJECTIVES = OBJECTIVE_NAMES;

/**
 * Architecture presets accepted by `model.preset` (reference-spec §1b). They come from
 * `src/model/config.ts`, without `vocab_size`, which the token dictionary supplies.
 */
export const MODEL_PRESETS = {
  "geneformer-v1-6l": withoutVocab(GENEFORMER_V1_6L),
  "geneformer-v1-12l": withoutVocab(GENEFORMER_V1_12L),
} as const;

/** Geneformer V1's non-size settings (activation, positions, dropout, eps, ...), the defaults without a preset. */
function geneformerDefaults() {
  const { hidden_act, max_position_embeddings, hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps, pad_token_id, type_vocab_size, initializer_range } =
    GENEFORMER_V1_6L;
  return { hidden_act, max_position_embeddings, hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps, pad_token_id, type_vocab_size, initializer_range };
}

function withoutVocab(c: Readonly<BertConfig>): Omit<BertConfig, "vocab_size"> {
  const { vocab_size: _vocab, ...rest } = c;
  return rest;
}

function expected(desc: string, input: unknown): string {
  return input === undefined ? `required key is missing (${desc})` : `expected ${desc}, got ${show(input)}`;
}

function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string") return JSON.stringify(v);
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return String(v);
  }
}

/** A number with a described constraint and an error message that quotes the bad value. */
export function num(desc: string, check: (x: number) => boolean, integer = false) {
  return z.custom<number>(
    (x) => typeof x === "number" && Number.isFinite(x) && (!integer || Number.isInteger(x)) && check(x),
    { error: (iss) => expected(desc, iss.input) },
  );
}
const posNum = () => num("a positive number", (x) => x > 0);
const nonNegNum = () => num("a number >= 0", (x) => x >= 0);
/** zod validators with messages that quote the bad value (shared by the comparison config). */
export const posInt = () => num("a positive integer", (x) => x > 0, true);
export const nonNegInt = () => num("an integer >= 0", (x) => x >= 0, true);
export const prob = () => num("a probability in [0, 1)", (x) => x >= 0 && x < 1);
export const openProb = () => num("a number in (0, 1)", (x) => x > 0 && x < 1);
export const anyInt = () => num("an integer", () => true, true);
export const str = () =>
  z.custom<string>((x) => typeof x === "string" && x.length > 0, {
    error: (iss) => expected("a non-empty string", iss.input),
  });
/** A string from a fixed list (the message lists them). */
export function oneOf<T extends string>(values: readonly T[]) {
  return z.custom<T>((x) => typeof x === "string" && (values as readonly string[]).includes(x), {
    error: (iss) => expected(`one of ${values.join(" | ")}`, iss.input),
  });
}

const modelSchema = z.strictObject({
  preset: oneOf(Object.keys(MODEL_PRESETS) as (keyof typeof MODEL_PRESETS)[]).optional(),
  vocab_size: posInt().optional(),
  hidden_size: posInt().optional(),
  num_hidden_layers: posInt().optional(),
  num_attention_heads: posInt().optional(),
  intermediate_size: posInt().optional(),
  hidden_act: oneOf(["relu", "gelu"] as const).optional(),
  max_position_embeddings: posInt().optional(),
  hidden_dropout_prob: prob().optional(),
  attention_probs_dropout_prob: prob().optional(),
  layer_norm_eps: posNum().optional(),
  pad_token_id: nonNegInt().optional(),
  type_vocab_size: posInt().optional(),
  initializer_range: posNum().optional(),
  gene_embeddings: z
    .preprocess(
      (x) => (typeof x === "string" ? { path: x } : x),
      z.strictObject({
        path: z.custom<string>((x) => typeof x === "string" && /\.(tsv|txt|tab|arrow|feather|ipc)$/i.test(x), {
          error: (iss) => expected("a .tsv or .arrow file of gene vectors", iss.input),
        }),
        trainable: z.boolean({ error: "expected true or false" }).default(false),
        missing: oneOf(["learned", "drop"] as const).default("learned"),
      }),
    )
    .optional(),
  genomic_positions: z
    .union([z.boolean(), z.strictObject({ scale: posNum() })], { error: "expected true, false or { scale: <positive number> }" })
    .default(false),
  pooling: oneOf(POOLINGS).optional(),
});

const dataSchema = z.strictObject({
  tokens: str(),
  max_length: posInt().optional(),
  val_fraction: prob().optional(),
  split: z
    .strictObject({
      cells: prob().optional(),
      genes: prob().default(0),
    })
    .optional(),
  split_seed: anyInt().default(42),
});

const trainingSchema = z.strictObject({
  objective: oneOf(OBJECTIVE_NAMES).default(OBJECTIVE_NAMES[0]),
  objectives: z.record(z.string(), nonNegNum(), { error: "expected a mapping of objective → weight" }).optional(),
  bottleneck: z
    .strictObject({
      genes: posInt().default(2000),
      likelihood: oneOf(LIKELIHOODS).default("nb"),
      decoder: oneOf(BOTTLENECK_DECODERS).default("mlp"),
      // a tokenized dataset of the same cells whose tokens carry every expressed gene's count (rank
      // tokens): the bottleneck's targets, for tokens that keep a few genes per cell (--top-genes)
      counts_from: str().optional(),
      // an obs column carried in the tokens (cellfm tokenize --carry): the decoder also reads a one-hot
      // of the cell's batch (scvi-tools batch_key), so the embedding need not encode it
      batch_key: str().optional(),
    })
    .default(() => ({ genes: 2000, likelihood: "nb" as const, decoder: "mlp" as const })),
  // the contrastive term (src/model/cell-heads.ts ContrastiveHead; views: src/train/objectives/cell.ts)
  contrastive: z
    .strictObject({
      temperature: posNum().default(DEFAULT_CONTRASTIVE_TEMPERATURE),
      projection: oneOf(CONTRASTIVE_PROJECTIONS).default("mlp"),
      noise: prob().default(DEFAULT_NOISE),
      downsample: oneOf(DOWNSAMPLE_METHODS).default(DOWNSAMPLE_METHODS[0]),
      group: posInt().optional(),
    })
    .default(() => ({ temperature: DEFAULT_CONTRASTIVE_TEMPERATURE, projection: "mlp" as const, noise: DEFAULT_NOISE, downsample: DOWNSAMPLE_METHODS[0] })),
  likelihood: oneOf(LIKELIHOODS).default(LIKELIHOODS[0]),
  noise: prob().default(DEFAULT_NOISE),
  downsample: oneOf(DOWNSAMPLE_METHODS).default(DOWNSAMPLE_METHODS[0]),
  pad_with_unexpressed: z.boolean({ error: "expected true or false" }).default(false),
  mask_probability: openProb().default(0.15),
  batch_size: posInt().default(12),
  max_tokens_per_batch: posInt().optional(),
  grad_accumulation: posInt().default(1),
  max_steps: posInt().optional(),
  epochs: posInt().optional(),
  max_tokens: posInt().optional(),
  lr: posNum().default(1e-3),
  warmup_steps: nonNegInt().default(0),
  schedule: oneOf(["linear", "cosine"] as const).default("linear"),
  weight_decay: nonNegNum().default(0.001),
  adam_beta1: prob().default(0.9),
  adam_beta2: prob().default(0.999),
  adam_epsilon: posNum().default(1e-8),
  max_grad_norm: nonNegNum().default(1.0),
  eval_every: nonNegInt().default(0),
  eval_cells: posInt().default(256),
  save_every: nonNegInt().default(0),
  keep_last: posInt().default(3),
  log_every: posInt().default(10),
  seed: anyInt().default(42),
  peak_flops: posNum().optional(),
  init_output_bias: oneOf(["zeros", "unigram"] as const).default("zeros"),
  // refuse a model whose estimated memory exceeds this (GiB); absent = this machine's memory (src/model/memory.ts)
  memory_limit_gb: posNum().optional(),
  // absent = every core on wasm/cpu (see loop.ts `defaultWorkers`)
  workers: num("an integer >= 1", (x) => x >= 1, true).optional(),
});

const outputSchema = z.strictObject({ dir: str() });

const rootSchema = z.strictObject({
  model: modelSchema,
  data: dataSchema,
  training: trainingSchema.default(() => trainingSchema.parse({})),
  output: outputSchema,
  backend: oneOf(BACKEND_CHOICES).default("auto"),
});

/**
 * `model:` section as written (preset not yet applied). Besides the `BertConfig` fields:
 * - `gene_embeddings` (binned / counts encodings): `{ path: genes.tsv | genes.arrow, trainable: false,
 *   missing: learned | drop }`, or just the path. Vectors (format: `src/data/gene-embeddings.ts`) are
 *   projected to `hidden_size` by a learned linear layer; `trainable: true` also trains the vectors.
 *   Genes without a vector get their own learned row (`learned`, default) or are removed from every
 *   context (`drop`). The table is saved in the checkpoint (and the file's sha256 in config.json).
 * - `genomic_positions` (binned / counts): add the fixed sinusoidal genomic-position encoding
 *   (scPRINT; genes within 10 kb share a position; `src/data/genomic-positions.ts`): `true`, or
 *   `{ scale: s }` to multiply the table by s (scPRINT: 1, rows of norm √(hidden/2)). Default false.
 */
export type ModelSection = z.infer<typeof modelSchema>;
/**
 * `data:` section with defaults: `val_fraction` 0.1 (held-out cells; `split.cells` is the same
 * setting), `split.genes` 0 (held-out genes: never in a training context, scored on the held-out
 * cells; only meaningful with `model.gene_embeddings`), `split_seed` 42.
 */
export type DataSection = Omit<z.infer<typeof dataSchema>, "val_fraction" | "split"> & {
  val_fraction: number;
  split: { cells: number; genes: number };
};
/**
 * `training:` section with defaults: `objective` mlm, `mask_probability` 0.15 (Geneformer),
 * `batch_size` 12 (Geneformer V1 per device), `grad_accumulation` 1, `lr` 1e-3, `warmup_steps` 0,
 * `schedule` linear, `weight_decay` 0.001, `adam_beta1/2` 0.9/0.999, `adam_epsilon` 1e-8 (HF),
 * `max_grad_norm` 1.0 (HF; 0 = no clipping), `eval_every` 0 (only at the end), `eval_cells` 256,
 * `save_every` 0 (only at the end), `keep_last` 3, `log_every` 10, `seed` 42, `peak_flops`
 * (FLOP/s used for MFU; default depends on the backend, see `loop.ts`), `init_output_bias` zeros (HF
 * init) or unigram (start the MLM output bias at the log training-token frequencies, so a short run
 * spends no steps learning gene frequencies and starts at the unigram baseline), `workers`
 * (data-parallel ranks: each micro-batch is split by cells over the main thread and `workers − 1`
 * worker threads, see `parallel.ts`; a speed knob for the wasm/cpu backends, not a batch-size
 * multiplier; absent = the cores this process may use on wasm/cpu, at most the cells of a batch, 1
 * for tiny models and on tensorflow, which threads internally; a resumed run keeps its checkpoint's
 * count: `loop.ts` `defaultWorkers`), `memory_limit_gb` (a model whose estimated weights, optimizer
 * state and activations exceed it is refused naming the key, before anything is allocated; default
 * this machine's physical memory; `src/model/memory.ts`). Exactly one of `max_steps`, `epochs` and `max_tokens` is required: `max_tokens` is a
 * budget in real (non-pad) training tokens, the schedule ends at the first optimizer step whose
 * cumulative tokens reach it (the steps are known in advance: the batch plan is deterministic), so
 * models whose encodings put different numbers of tokens in a cell get the same data budget.
 */
export type TrainingSection = z.infer<typeof trainingSchema>;

/** A validated training configuration; paths are absolute. */
export interface TrainConfig {
  /** Path of the YAML file it came from (or "<object>"). */
  source: string;
  model: ModelSection;
  /** `data:` with `val_fraction` and `split` resolved (`split.cells` = `val_fraction`). */
  data: DataSection;
  training: TrainingSection;
  output: { dir: string };
  backend: BackendChoice;
}

/** One zod issue as `<source>: <key.path>: <problem>`. */
export function formatIssue(source: string, iss: z.core.$ZodIssue): string {
  const p = iss.path.map(String).join(".");
  if (iss.code === "unrecognized_keys") {
    const keys = iss.keys.map((k) => (p ? `${p}.${k}` : k));
    return `${source}: ${keys.join(", ")}: unknown key${keys.length > 1 ? "s" : ""} (check the spelling)`;
  }
  let msg = iss.message;
  if (iss.code === "invalid_type" && "input" in iss && iss.input === undefined) msg = "required key is missing";
  else if (iss.code === "invalid_type") msg = `expected ${iss.expected === "object" ? "a mapping" : iss.expected}, got ${show((iss as { input?: unknown }).input)}`;
  return `${source}: ${p || "(top level)"}: ${msg}`;
}

/**
 * Validate a parsed configuration object.
 *
 * @param obj the parsed YAML (plain object).
 * @param source the file name used in error messages.
 * @param cwd folder that relative paths are resolved against (default `process.cwd()`).
 * @throws Error listing every problem, one per line, each as `<source>: <key.path>: <problem>`.
 */
export function parseTrainConfig(obj: unknown, source = "<config>", cwd = process.cwd()): TrainConfig {
  const r = rootSchema.safeParse(obj ?? {}, { reportInput: true });
  if (!r.success) {
    throw new Error(r.error.issues.map((i) => formatIssue(source, i)).join("\n"));
  }
  const c = r.data;
  const errors: string[] = [];
  const t = c.training;
  const lengthKeys = (["max_steps", "epochs", "max_tokens"] as const).filter((k) => t[k] !== undefined);
  if (lengthKeys.length === 0) {
    errors.push(`${source}: training.max_steps: give training.max_steps, training.epochs or training.max_tokens`);
  }
  if (lengthKeys.length > 1) {
    errors.push(`${source}: training.${lengthKeys[1]}: give only one of training.max_steps, training.epochs and training.max_tokens`);
  }
  if (!c.model.preset) {
    for (const k of ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"] as const) {
      if (c.model[k] === undefined) errors.push(`${source}: model.${k}: required key is missing (or set model.preset)`);
    }
  }
  const m = resolveModelSection(c.model);
  if (m.hidden_size !== undefined && m.num_attention_heads !== undefined && m.hidden_size % m.num_attention_heads !== 0) {
    errors.push(
      `${source}: model.hidden_size: ${m.hidden_size} is not divisible by model.num_attention_heads ${m.num_attention_heads}`,
    );
  }
  if (c.data.max_length !== undefined && m.max_position_embeddings !== undefined && c.data.max_length > m.max_position_embeddings) {
    errors.push(
      `${source}: data.max_length: ${c.data.max_length} exceeds model.max_position_embeddings ${m.max_position_embeddings}`,
    );
  }
  if (t.max_tokens_per_batch !== undefined && c.data.max_length !== undefined && t.max_tokens_per_batch < c.data.max_length) {
    errors.push(
      `${source}: training.max_tokens_per_batch: ${t.max_tokens_per_batch} is smaller than data.max_length ${c.data.max_length} (one cell must fit)`,
    );
  }
  if (c.data.val_fraction !== undefined && c.data.split?.cells !== undefined && c.data.val_fraction !== c.data.split.cells) {
    errors.push(`${source}: data.split.cells: ${c.data.split.cells} conflicts with data.val_fraction ${c.data.val_fraction} (the same setting; give one)`);
  }
  const valFraction = c.data.split?.cells ?? c.data.val_fraction ?? 0.1;
  const geneFraction = c.data.split?.genes ?? 0;
  if (geneFraction > 0 && valFraction === 0) {
    errors.push(`${source}: data.split.genes: held-out genes are scored on held-out cells; set data.split.cells > 0`);
  }
  if (t.objectives) {
    const known = [...TOKEN_OBJECTIVES, ...CELL_OBJECTIVES] as readonly string[];
    for (const k of Object.keys(t.objectives)) {
      if (!known.includes(k)) errors.push(`${source}: training.objectives.${k}: unknown objective (choose from ${known.join(", ")})`);
    }
    const tokenKeys = Object.keys(t.objectives).filter((k) => (TOKEN_OBJECTIVES as readonly string[]).includes(k));
    if (tokenKeys.length > 1) errors.push(`${source}: training.objectives: give one token objective (${tokenKeys.join(" or ")}), not both`);
    if (!Object.values(t.objectives).some((w) => w > 0)) errors.push(`${source}: training.objectives: give at least one objective a weight > 0`);
    // the token objective named in training.objectives is training.objective; an explicit other one is a conflict
    const given = (obj as { training?: { objective?: unknown } } | undefined)?.training?.objective;
    if (tokenKeys.length === 1 && given !== undefined && given !== tokenKeys[0]) {
      errors.push(`${source}: training.objective: ${String(given)} conflicts with training.objectives, which names ${tokenKeys[0]} (give the token objective in one place)`);
    }
    if (tokenKeys.length === 1) t.objective = tokenKeys[0] as (typeof TOKEN_OBJECTIVES)[number];
  }
  if (errors.length) throw new Error(errors.join("\n"));
  const { split: _split, ...dataRest } = c.data;
  if (t.bottleneck.counts_from) t.bottleneck.counts_from = path.resolve(cwd, t.bottleneck.counts_from);
  const model = c.model.gene_embeddings ? { ...c.model, gene_embeddings: { ...c.model.gene_embeddings, path: path.resolve(cwd, c.model.gene_embeddings.path) } } : c.model;
  return {
    source,
    model,
    data: { ...dataRest, val_fraction: valFraction, split: { cells: valFraction, genes: geneFraction }, tokens: path.resolve(cwd, c.data.tokens) },
    training: t,
    output: { dir: path.resolve(cwd, c.output.dir) },
    backend: c.backend,
  };
}

/**
 * Read a YAML configuration file that must hold a mapping (the config's sections). Merge keys
 * (`<<: *defaults`) are resolved; top-level keys named `x-<anything>` hold only anchors and are dropped.
 * @param sections what the mapping should hold, for the error message (e.g. "model, data, training, output").
 * @throws Error when the file is missing, is not valid YAML (with line/column), or is not a mapping.
 */
export function readYamlMapping(file: string, sections: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`config ${file} not found`);
  let obj: unknown;
  try {
    // YAML merge keys (`<<: *defaults`, YAML 1.1) are resolved, as PyYAML and most tools do
    obj = parseYaml(fs.readFileSync(file, "utf8"), { merge: true });
  } catch (e) {
    throw new Error(`${file}: not valid YAML: ${(e as Error).message}`);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new Error(`${file}: expected a mapping with sections ${sections}`);
  }
  // top-level `x-<name>` keys only hold anchors for merge keys (as in Docker Compose): not sections
  for (const k of Object.keys(obj)) if (k.startsWith("x-")) delete (obj as Record<string, unknown>)[k];
  return obj as Record<string, unknown>;
}

/**
 * Read and validate a YAML training configuration.
 * @throws Error when the file is missing, is not valid YAML (with line/column), or fails validation.
 */
export function loadTrainConfig(file: string, cwd = process.cwd()): TrainConfig {
  return parseTrainConfig(readYamlMapping(file, "model, data, training, output"), file, cwd);
}

/**
 * Apply `preset` and the defaults to the `model:` section, giving HuggingFace `BertConfig` fields.
 * `vocab_size` stays undefined unless given (the loop fills it from the token dictionary).
 * Defaults without a preset follow Geneformer (ReLU, dropout 0.02, eps 1e-12, 2,048 positions).
 */
export function resolveModelSection(m: ModelSection): Omit<ModelSection, "preset" | "gene_embeddings" | "genomic_positions" | "pooling"> {
  const { preset, gene_embeddings: _ge, genomic_positions: _gp, pooling: _pool, ...rest } = m;
  const base = preset
    ? MODEL_PRESETS[preset]
    : geneformerDefaults();
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) out[k] = v;
  return out as Omit<ModelSection, "preset" | "gene_embeddings" | "genomic_positions" | "pooling">;
}
