/**
 * One place that builds a model from a checkpoint's `config.json`: the HF `architectures` entry
 * plus cellfm's `cellfm` block (encoding, objective, head options) choose the input embedding and
 * the head; the BERT fields ({@link BertConfig}) size the encoder. `readCheckpoint`, the training
 * loop and the gradient workers all build models here.
 *
 * The `cellfm` block is validated with zod (each problem names its key, e.g.
 * `cellfm.objective: expected one of mlm, got "mmm"`); provenance fields (dictionary, backend,
 * versions, ...) pass through unchanged.
 */
import { z } from "zod";
import { BertEmbeddings, BertForMaskedLM, CellModel, type HeadFactory, type LossTargets, MlmHead, type ModelSpec, RANK_ENCODING } from "./bert.js";
import { BOTTLENECK_DECODERS, type CellSpec, CompositeHead, POOLINGS } from "./cell-heads.js";
import type { BertConfig } from "./config.js";
import type { Likelihood } from "./likelihoods.js";
import { BinHead, DenoiseHead, type GeneIdentityOptions, GeneValueEmbeddings, ValueRegressionHead } from "./value-model.js";

/** Encoding names of the value-keeping encodings (tokenized dataset manifest `encoding`). */
export const BINNED_ENCODING = "scgpt-binned";
export const COUNTS_ENCODING = "scprint-counts";

/** scGPT's number of bins (bin 0 = zero). */
const DEFAULT_BINS = 51;

function nBinsOf(spec: ModelSpec): number {
  const n = spec.head?.n_bins ?? DEFAULT_BINS;
  if (!Number.isInteger(n) || (n as number) < 2) throw new Error(`cellfm.head.n_bins: expected an integer >= 2, got ${JSON.stringify(n)}`);
  return n as number;
}

function likelihoodOf(spec: ModelSpec): Likelihood {
  const l = spec.head?.likelihood ?? "zinb";
  if (l !== "zinb" && l !== "nb" && l !== "poisson") throw new Error(`cellfm.head.likelihood: expected one of zinb | nb | poisson, got ${JSON.stringify(l)}`);
  return l;
}

/** The gene-identity options of a spec (`cellfm.gene_embeddings`, `cellfm.genomic_positions`). */
export function geneIdentityOf(spec: Pick<ModelSpec, "gene_embeddings" | "genomic_positions">): GeneIdentityOptions {
  const g = spec.gene_embeddings;
  return {
    ...(g ? { vectors: { dim: g.dim, trainable: g.trainable, missing: g.missing } } : {}),
    ...(spec.genomic_positions ? { genomicPositions: true } : {}),
  };
}

/**
 * The head of a model: the token objective's head, or with a `cellfm.cell` block the
 * {@link CompositeHead} of the token head (left out when its weight is 0) and the cell heads.
 */
function withCell<T extends LossTargets>(spec: ModelSpec, head: HeadFactory<T>): HeadFactory<LossTargets> {
  const cell = spec.cell;
  if (!cell) return head as HeadFactory<LossTargets>;
  return (c, p, e) => new CompositeHead(c, p, (cell.objectives[spec.objective] ?? 0) > 0 ? (head(c, p, e) as never) : undefined, spec.objective, cell);
}

function denoiseBuilder(encoding: string): Builder {
  return {
    encoding,
    objective: "denoise",
    architecture: encoding === RANK_ENCODING ? "CellfmRankForDenoising" : "CellfmForDenoising",
    build: (config, spec, seed) =>
      new CellModel(
        config,
        { seed },
        spec,
        (c, p) =>
          encoding === RANK_ENCODING
            ? new BertEmbeddings(c, p)
            : new GeneValueEmbeddings(c, p, encoding === BINNED_ENCODING ? { kind: "bins", nBins: nBinsOf(spec) } : { kind: "counts" }, geneIdentityOf(spec)),
        withCell(spec, (c, p) => new DenoiseHead(c, p, likelihoodOf(spec))),
      ),
  };
}

/** A model the factory can build: encoding × objective, and the HF architecture name it is saved under. */
interface Builder {
  encoding: string;
  objective: string;
  architecture: string;
  build(config: BertConfig, spec: ModelSpec, seed: number): CellModel;
}

const BUILDERS: Builder[] = [
  {
    encoding: RANK_ENCODING,
    objective: "mlm",
    architecture: "BertForMaskedLM",
    build: (config, spec, seed) =>
      spec.cell
        ? new CellModel(config, { seed }, spec, (c, p) => new BertEmbeddings(c, p), withCell(spec, (c, p, emb) => new MlmHead(c, p, (emb as BertEmbeddings).word)))
        : new BertForMaskedLM(config, { seed }),
  },
  {
    encoding: BINNED_ENCODING,
    objective: "mlm",
    architecture: "CellfmForMaskedBins",
    build: (config, spec, seed) =>
      new CellModel(
        config,
        { seed },
        spec,
        (c, p) => new GeneValueEmbeddings(c, p, { kind: "bins", nBins: nBinsOf(spec) }, geneIdentityOf(spec)),
        withCell(spec, (c, p) => new BinHead(c, p, nBinsOf(spec))),
      ),
  },
  {
    encoding: COUNTS_ENCODING,
    objective: "mlm",
    architecture: "CellfmForMaskedValues",
    build: (config, spec, seed) =>
      new CellModel(
        config,
        { seed },
        spec,
        (c, p) => new GeneValueEmbeddings(c, p, { kind: "counts" }, geneIdentityOf(spec)),
        withCell(spec, (c, p) => new ValueRegressionHead(c, p)),
      ),
  },
  denoiseBuilder(COUNTS_ENCODING),
  denoiseBuilder(RANK_ENCODING),
  denoiseBuilder(BINNED_ENCODING),
];

/** Encoding × objective pairs the model factory can build, with their HF architecture names. */
export function buildableModels(): readonly { encoding: string; objective: string; architecture: string }[] {
  return BUILDERS.map(({ encoding, objective, architecture }) => ({ encoding, objective, architecture }));
}

/** zod schema of the model-defining part of config.json's `cellfm` block; other keys pass through. */
export const CellfmModelBlockSchema = z
  .object({
    encoding: z.string({ error: "cellfm.encoding: expected a string (the tokenized dataset's encoding)" }).min(1),
    objective: z.string({ error: "cellfm.objective: expected a string" }).min(1),
    head: z.record(z.string(), z.unknown(), { error: "cellfm.head: expected a mapping of head options" }).optional(),
    gene_embeddings: z
      .object(
        {
          dim: z.number({ error: "cellfm.gene_embeddings.dim: expected a positive integer (the vector width)" }).int().positive(),
          trainable: z.boolean({ error: "cellfm.gene_embeddings.trainable: expected true or false" }),
          missing: z.enum(["learned", "drop"], { error: "cellfm.gene_embeddings.missing: expected learned | drop" }),
        },
        { error: "cellfm.gene_embeddings: expected a mapping (dim, trainable, missing, ...)" },
      )
      .passthrough()
      .optional(),
    genomic_positions: z
      .union([z.boolean(), z.record(z.string(), z.unknown())], { error: "cellfm.genomic_positions: expected true, false or a mapping" })
      .optional(),
    cell: z
      .object(
        {
          pooling: z.enum(POOLINGS, { error: `cellfm.cell.pooling: expected ${POOLINGS.join(" | ")}` }),
          objectives: z.record(z.string(), z.number().nonnegative(), { error: "cellfm.cell.objectives: expected a mapping of term → weight >= 0" }),
          bottleneck: z
            .object({
              genes: z.array(z.number().int().nonnegative(), { error: "cellfm.cell.bottleneck.genes: expected a list of token ids" }),
              likelihood: z.enum(["zinb", "nb", "poisson"], { error: "cellfm.cell.bottleneck.likelihood: expected zinb | nb | poisson" }),
              decoder: z.enum(BOTTLENECK_DECODERS, { error: `cellfm.cell.bottleneck.decoder: expected ${BOTTLENECK_DECODERS.join(" | ")}` }).optional(),
            })
            .passthrough()
            .optional(),
        },
        { error: "cellfm.cell: expected a mapping (pooling, objectives, bottleneck)" },
      )
      .optional(),
  })
  .passthrough();

/**
 * Validate a `cellfm` block and return the spec of the model it describes.
 * @param block the parsed `cellfm` object of config.json
 * @param architectures the parsed `architectures` of config.json (checked when given)
 * @throws Error naming the key: a missing/ill-typed `cellfm.encoding`/`objective`/`head`, an
 *   encoding × objective pair no model exists for (both named), or an `architectures` entry that
 *   does not match the pair.
 */
export function modelSpecFrom(block: unknown, architectures?: unknown): ModelSpec {
  const r = CellfmModelBlockSchema.safeParse(block);
  if (!r.success) {
    throw new Error(
      r.error.issues
        .map((i) => {
          const key = ["cellfm", ...i.path.map(String)].join(".");
          return i.message.startsWith("cellfm.") ? i.message : `${key}: ${i.message}`;
        })
        .join("; "),
    );
  }
  const { encoding, objective, head, gene_embeddings, genomic_positions, cell } = r.data;
  const b = BUILDERS.find((x) => x.encoding === encoding && x.objective === objective);
  if (!b) {
    const pairs = BUILDERS.map((x) => `${x.encoding} + ${x.objective}`).join(", ");
    throw new Error(`cellfm.encoding "${encoding}" with cellfm.objective "${objective}" is not a supported pair (supported: ${pairs})`);
  }
  if (encoding === RANK_ENCODING && (gene_embeddings || genomic_positions)) {
    const key = gene_embeddings ? "gene_embeddings" : "genomic_positions";
    throw new Error(`cellfm.${key}: only for the binned and counts encodings (${BINNED_ENCODING}, ${COUNTS_ENCODING}), not ${encoding}`);
  }
  if (architectures !== undefined) {
    if (!Array.isArray(architectures) || typeof architectures[0] !== "string") {
      throw new Error(`architectures: expected a list of class names, got ${JSON.stringify(architectures)}`);
    }
    if (architectures[0] !== b.architecture) {
      throw new Error(`architectures: "${architectures[0]}" does not match cellfm ${encoding} + ${objective} (expected "${b.architecture}")`);
    }
  }
  return {
    architecture: b.architecture,
    encoding,
    objective,
    ...(head ? { head } : {}),
    ...(gene_embeddings ? { gene_embeddings: gene_embeddings as ModelSpec["gene_embeddings"] } : {}),
    ...(genomic_positions ? { genomic_positions } : {}),
    ...(cell ? { cell: cell as CellSpec } : {}),
  };
}

/**
 * Build a model (fresh weights) for a config and a spec.
 * @param opts.seed seed of the initial weights (default 0)
 * @throws Error when no model exists for the spec's encoding × objective (both named)
 */
export function buildModel(config: BertConfig, spec: Omit<ModelSpec, "architecture">, opts: { seed?: number } = {}): CellModel {
  const full = modelSpecFrom(spec);
  const b = BUILDERS.find((x) => x.encoding === full.encoding && x.objective === full.objective)!;
  return b.build(config, full, opts.seed ?? 0);
}
