/**
 * The comparison configuration (`cellfm compare --config X.yaml`): which arms (encoding × objective ×
 * options) to train on the same cells with the same architecture, seeds and token budget.
 *
 * ```yaml
 * data:     { input: data/pbmc3k_seurat.h5ad, label: cell_type, batch: batch, model_version: V1,
 *             max_length: 64, val_fraction: 0.1, split_seed: 42 }
 * seeds:    [1, 2, 3]
 * model:    { num_hidden_layers: 4, hidden_size: 128, ... }        # shared by every arm
 * training: { max_tokens: 400000, batch_size: 32, lr: 1.0e-3, ... } # shared; budget in TOKENS
 * assess:   { min_cells: 150, per_type: 150, n_hvg: 2000, k: 15 }
 * denoise:  { fraction: 0.7, cells: 264, knn_k: 10, n_pcs: 50 }
 * arms:
 *   - { name: rank-mlm, encoding: rank, objective: mlm }
 *   - { name: binned-mlm, encoding: binned, objective: mlm, training: { lr: 5.0e-4 } }
 * ```
 *
 * An arm's own `model:` / `training:` / `tokenize:` keys override the shared sections. The token
 * budget (`training.max_tokens`) is required and `max_steps`/`epochs` are refused, so every arm sees
 * the same number of real training tokens whatever its tokens per cell. Each arm × seed becomes one
 * `cellfm train` configuration, validated here (all of them before anything is tokenized or trained);
 * every error names the file, the arm and the key, e.g.
 * `configs/x.yaml: arm "binned-mlm": training.lr: expected a positive number, got "abc"`.
 * Which encoding × objective pairs exist is the training registry's business
 * (`src/train/objectives/index.ts` `SUPPORTED_PAIRS`); compare keeps no list of its own.
 */
import * as path from "node:path";
import { z } from "zod";
import { BINNED, ENCODINGS, encodingByKey, encodingByName } from "../encoding/index.js";
import { DOWNSAMPLE_METHODS } from "../train/downsample.js";
import { canPredictCounts } from "./predict.js";
import { isSupportedPair, SUPPORTED_PAIRS } from "../train/objectives/index.js";
import { anyInt, formatIssue, num, oneOf, parseTrainConfig, posInt, prob, readYamlMapping, str, type TrainConfig } from "../train/config.js";

/** The short encoding name of a registry pair (`rank`, `binned`, `counts`), as arms name it. */
function shortEncoding(manifestName: string): string {
  return encodingByName(manifestName)?.key ?? manifestName;
}

/**
 * The encoding × objective pairs an arm can name, in arm spelling (`rank × mlm`, ...): the training
 * registry's {@link SUPPORTED_PAIRS} (`src/train/objectives/index.ts`), the one list `cellfm train` checks.
 */
export function supportedArmPairs(): { encoding: string; objective: string }[] {
  return SUPPORTED_PAIRS.map((p) => ({ encoding: shortEncoding(p.encoding), objective: p.objective }));
}

/** Whether an arm's encoding (short name) × objective pair can be trained (the training registry). */
export function pairSupported(encoding: string, objective: string): boolean {
  const e = encodingByKey(encoding);
  return e !== undefined && isSupportedPair(e.name, objective);
}

/**
 * Key of the tokenized dataset an arm trains on: arms with the same encoding and tokenizer options
 * share one tokenization (`<output>/tokens/<key>/`). rank has no options; binned adds its bin count
 * and tie-spreading seed; binned / counts add `-top<K>` with `top_genes: K`.
 */
export function tokensKey(arm: Pick<ArmConfig, "encoding" | "tokenize">): string {
  const top = arm.tokenize.top_genes !== undefined ? `-top${arm.tokenize.top_genes}` : "";
  if (arm.encoding === BINNED.key) return `${BINNED.key}-b${arm.tokenize.n_bins ?? BINNED.defaults.n_bins}-s${arm.tokenize.seed ?? 0}${top}`;
  return arm.encoding + top;
}

/** Folder of the tokenized dataset an arm trains on (shared by arms with the same {@link tokensKey}). */
export function tokensDir(outDir: string, arm: Pick<ArmConfig, "encoding" | "tokenize">): string {
  return path.join(outDir, "tokens", tokensKey(arm));
}

const record = () => z.record(z.string(), z.unknown());
const armName = () =>
  z.custom<string>((x) => typeof x === "string" && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(x), {
    error: (iss) => `expected a name of letters, digits, ".", "_" or "-" (it names a folder), got ${JSON.stringify(iss.input)}`,
  });

const armSchema = z.strictObject({
  name: armName(),
  encoding: str(),
  objective: str(),
  tokenize: z.strictObject({ n_bins: posInt().optional(), seed: anyInt().optional(), top_genes: posInt().optional() }).optional(),
  model: record().optional(),
  training: record().optional(),
});

const rootSchema = z.strictObject({
  data: z.strictObject({
    input: str(),
    label: str().default("cell_type"),
    batch: str().optional(),
    model_version: oneOf(["V1", "V2"] as const).default("V1"),
    layer: str().optional(),
    use_raw: z.boolean().optional(),
    max_length: posInt().optional(),
    val_fraction: prob().default(0.1),
    split_seed: anyInt().default(42),
  }),
  seeds: z.array(anyInt()).min(1).default([42]),
  model: record(),
  training: record(),
  assess: z
    .strictObject({
      min_cells: posInt().default(150),
      per_type: posInt().optional(),
      n_hvg: posInt().default(2000),
      k: posInt().default(15),
      seed: anyInt().default(0),
      threads: posInt().optional(),
      umap_epochs: posInt().optional(),
    })
    .default({ min_cells: 150, n_hvg: 2000, k: 15, seed: 0 }),
  denoise: z
    .strictObject({
      fraction: num("a number in (0, 1)", (x) => x > 0 && x < 1).default(0.7),
      method: oneOf(DOWNSAMPLE_METHODS).default("binomial"),
      cells: posInt().default(500),
      knn_k: posInt().default(10),
      n_pcs: posInt().default(50),
      n_hvg: posInt().default(2000),
      seed: anyInt().default(0),
    })
    .default({ fraction: 0.7, method: "binomial", cells: 500, knn_k: 10, n_pcs: 50, n_hvg: 2000, seed: 0 }),
  // layer absent: cellfm embed's default (-1; 0 for a model trained with cell-level objectives)
  embed: z.strictObject({ layer: anyInt().optional() }).default({}),
  arms: z.array(z.unknown()).min(1),
  backend: oneOf(["auto", "tensorflow", "wasm", "cpu"] as const).default("auto"),
});

/** One arm as configured, with its sections merged over the shared ones. */
export interface ArmConfig {
  name: string;
  encoding: string;
  objective: string;
  /**
   * tokenizer options of the encoding: binned: `n_bins` (default 51) and the tie-spreading `seed`;
   * binned / counts: `top_genes` (each cell keeps its K genes ranked first by rank-value, the genes a
   * rank arm with `data.max_length: K` reads; `cellfm tokenize --top-genes`).
   */
  tokenize: { n_bins?: number; seed?: number; top_genes?: number };
  /** shared `model:` with the arm's overrides. */
  model: Record<string, unknown>;
  /** shared `training:` with the arm's overrides (no seed: one run per `seeds` entry). */
  training: Record<string, unknown>;
  /** whether its model predicts counts (denoising benchmark). */
  predictsCounts: boolean;
}

/** A validated comparison configuration; paths are absolute. */
export interface CompareConfig {
  source: string;
  data: z.infer<typeof rootSchema>["data"];
  seeds: number[];
  assess: z.infer<typeof rootSchema>["assess"];
  denoise: z.infer<typeof rootSchema>["denoise"];
  embed: { layer?: number };
  arms: ArmConfig[];
  backend: "auto" | "tensorflow" | "wasm" | "cpu";
}

/** Folder of one arm inside the comparison's output folder. */
export function armDir(outDir: string, arm: string): string {
  return path.join(outDir, arm);
}

/** Folder of one arm × seed (its training run, untrained floor, embeddings, denoising scores). */
export function seedDir(outDir: string, arm: string, seed: number): string {
  return path.join(outDir, arm, `seed-${seed}`);
}

/**
 * The `cellfm train` configuration of one arm × seed: shared sections, the arm's overrides, the seed
 * as `training.seed`, tokens from the arm's folder, output in the seed's folder.
 * @throws Error `<file>: arm "<name>": <key>: <problem>` when the merged configuration is invalid.
 */
export function armTrainConfig(c: CompareConfig, arm: ArmConfig, seed: number, outDir: string): TrainConfig {
  const training: Record<string, unknown> = { ...arm.training, seed };
  const bnTokens = bottleneckCountsTokens(arm, outDir);
  if (bnTokens) training.bottleneck = { ...((training.bottleneck as object | undefined) ?? {}), counts_from: bnTokens };
  return parseTrainConfig(
    {
      model: arm.model,
      data: {
        tokens: tokensDir(outDir, arm),
        ...(c.data.max_length !== undefined ? { max_length: c.data.max_length } : {}),
        val_fraction: c.data.val_fraction,
        split_seed: c.data.split_seed,
      },
      training,
      output: { dir: path.join(seedDir(outDir, arm.name, seed), "train") },
      backend: c.backend,
    },
    `${c.source}: arm "${arm.name}"`,
  );
}

/**
 * The tokens a bottleneck arm's targets come from when its own tokens keep a few genes per cell
 * (`tokenize.top_genes`): the comparison's rank tokens (every expressed gene with its count), so the
 * value arms decode the same genes from the same counts as the rank arms. Undefined otherwise.
 */
export function bottleneckCountsTokens(arm: ArmConfig, outDir: string): string | undefined {
  const o = (arm.training as { objectives?: Record<string, number> }).objectives;
  if (arm.tokenize.top_genes === undefined || !((o?.bottleneck ?? 0) > 0)) return undefined;
  return tokensDir(outDir, { encoding: "rank", tokenize: {} });
}

/**
 * Validate a parsed comparison configuration (everything that can be checked without the data).
 * @param obj the parsed YAML. @param source the file name for messages.
 * @param opts.arms run only these arms (`--arms a,b`); unknown names are an error.
 * @param opts.batch override `data.batch` (`--batch`); `opts.input` overrides `data.input` (`--input`).
 * @throws Error listing every problem, one per line, each naming the file, the arm and the key.
 */
export function parseCompareConfig(obj: unknown, source = "<config>", opts: { arms?: string[]; batch?: string; input?: string; cwd?: string } = {}): CompareConfig {
  const cwd = opts.cwd ?? process.cwd();
  const r = rootSchema.safeParse(obj ?? {}, { reportInput: true });
  if (!r.success) throw new Error(r.error.issues.map((i) => formatIssue(source, i)).join("\n"));
  const c = r.data;
  const errors: string[] = [];
  for (const k of ["max_steps", "epochs"]) {
    if (k in c.training) errors.push(`${source}: training.${k}: not allowed in a comparison; give the budget in tokens (training.max_tokens) so arms with different tokens per cell see the same data`);
  }
  if (!("max_tokens" in c.training)) errors.push(`${source}: training.max_tokens: required key is missing (the training budget of every arm, in real tokens)`);
  if ("seed" in c.training) errors.push(`${source}: training.seed: set the seeds with the top-level seeds: [..] list`);
  if (new Set(c.seeds).size !== c.seeds.length) errors.push(`${source}: seeds: a seed is listed twice (${c.seeds.join(", ")})`);
  const arms: ArmConfig[] = [];
  const seen = new Set<string>();
  c.arms.forEach((raw, i) => {
    const a = armSchema.safeParse(raw, { reportInput: true });
    const label = `arms[${i}]${raw && typeof raw === "object" && typeof (raw as { name?: unknown }).name === "string" ? ` ("${(raw as { name: string }).name}")` : ""}`;
    if (!a.success) {
      for (const iss of a.error.issues) errors.push(formatIssue(`${source}: ${label}`, iss));
      return;
    }
    const arm = a.data;
    const where = `${source}: arm "${arm.name}"`;
    if (seen.has(arm.name)) {
      errors.push(`${where}: name: two arms are called "${arm.name}" (each arm is a folder; give them different names)`);
      return;
    }
    seen.add(arm.name);
    if (!pairSupported(arm.encoding, arm.objective)) {
      const pairs = supportedArmPairs();
      const key = pairs.some((p) => p.encoding === arm.encoding) ? "objective" : "encoding";
      errors.push(
        `${where}: ${key}: encoding "${arm.encoding}" × objective "${arm.objective}" is not a supported pair ` +
          `(supported: ${pairs.map((p) => `${p.encoding} × ${p.objective}`).join(", ")})`,
      );
      return;
    }
    if (arm.tokenize?.top_genes !== undefined && !encodingByKey(arm.encoding)!.readsValues) {
      const sets = ENCODINGS.filter((e) => e.readsValues).map((e) => e.key);
      errors.push(`${where}: tokenize.top_genes: is for the ${sets.join(" and ")} encodings (a ${arm.encoding} arm keeps its top genes with data.max_length)`);
    }
    const merged = { ...c.training, ...(arm.training ?? {}) };
    if (arm.objective !== "mlm" && merged.init_output_bias === "unigram") {
      errors.push(`${where}: training.init_output_bias: unigram is for objective mlm; set init_output_bias: zeros in the arm (objective ${arm.objective} starts from zeros)`);
    }
    for (const k of ["max_steps", "epochs", "seed"]) {
      if (arm.training && k in arm.training) errors.push(`${where}: training.${k}: not allowed in an arm (the budget is training.max_tokens; seeds come from seeds:)`);
    }
    arms.push({
      name: arm.name,
      encoding: arm.encoding,
      objective: arm.objective,
      tokenize: arm.tokenize ?? {},
      model: { ...c.model, ...(arm.model ?? {}) },
      training: { ...c.training, ...(arm.training ?? {}), objective: arm.objective },
      // a count head exists only when the token objective has a weight (training.objectives)
      predictsCounts:
        canPredictCounts(encodingByKey(arm.encoding)!.name, arm.objective) &&
        (() => {
          const o = ({ ...c.training, ...(arm.training ?? {}) } as { objectives?: Record<string, number> }).objectives;
          return !o || (o[arm.objective] ?? 0) > 0;
        })(),
    });
  });
  let chosen = arms;
  if (opts.arms && opts.arms.length) {
    const unknown = opts.arms.filter((n) => !seen.has(n));
    if (unknown.length) errors.push(`--arms: no arm called ${unknown.map((u) => `"${u}"`).join(", ")} in ${source} (arms: ${[...seen].join(", ")})`);
    chosen = arms.filter((a) => opts.arms!.includes(a.name));
  }
  const cfg: CompareConfig = {
    source,
    data: { ...c.data, input: path.resolve(cwd, opts.input ?? c.data.input), ...(opts.batch ? { batch: opts.batch } : {}) },
    seeds: c.seeds,
    assess: c.assess,
    denoise: c.denoise,
    embed: c.embed,
    arms: chosen,
    backend: c.backend,
  };
  // a decoder conditioned on the batch reads an obs column the arm's tokens carry: compare carries
  // data.label and data.batch only
  for (const arm of chosen) {
    const key = (arm.training.bottleneck as { batch_key?: string } | undefined)?.batch_key;
    if (key !== undefined && key !== cfg.data.batch) {
      errors.push(
        `${source}: arm "${arm.name}": training.bottleneck.batch_key: "${key}" is not the comparison's batch column (${cfg.data.batch ? `data.batch: ${cfg.data.batch}` : "no data.batch or --batch given"}); the tokens carry only data.label and data.batch`,
      );
    }
  }
  // every arm × seed must be a valid training configuration (errors name the arm and the key)
  if (errors.length === 0) {
    for (const arm of chosen) {
      try {
        armTrainConfig(cfg, arm, c.seeds[0], path.join(cwd, "<output>"));
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  }
  if (errors.length) throw new Error(errors.join("\n"));
  return cfg;
}

/**
 * Read and validate a YAML comparison configuration.
 * @throws Error when the file is missing, not valid YAML (duplicate keys included), or invalid.
 */
export function loadCompareConfig(file: string, opts: { arms?: string[]; batch?: string; input?: string; cwd?: string } = {}): CompareConfig {
  return parseCompareConfig(readYamlMapping(file, "data, model, training, arms"), file, opts);
}
