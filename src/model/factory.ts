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
import { ENCODINGS, encodingByName } from "../encoding/index.js";
import { CellModel, type HeadFactory, type LossTargets, type ModelSpec } from "./bert.js";
import { BOTTLENECK_DECODERS, type CellSpec, CompositeHead, CONTRASTIVE_PROJECTIONS, POOLINGS } from "./cell-heads.js";
import type { BertConfig } from "./config.js";
import { LIKELIHOODS } from "./likelihoods.js";

export { geneIdentityOf } from "../encoding/models.js";

/**
 * The head of a model: the token objective's head, or with a `cellfm.cell` block the
 * {@link CompositeHead} of the token head (left out when its weight is 0) and the cell heads.
 */
function withCell<T extends LossTargets>(spec: ModelSpec, head: HeadFactory<T>): HeadFactory<LossTargets> {
  const cell = spec.cell;
  if (!cell) return head as HeadFactory<LossTargets>;
  return (c, p, e) => new CompositeHead(c, p, (cell.objectives[spec.objective] ?? 0) > 0 ? (head(c, p, e) as never) : undefined, spec.objective, cell, e);
}

/** A model the factory can build: encoding × objective, and the HF architecture name it is saved under. */
interface Builder {
  encoding: string;
  objective: string;
  architecture: string;
  build(config: BertConfig, spec: ModelSpec, seed: number): CellModel;
}

/**
 * Every encoding's models (`src/encoding/`), one row per encoding × objective: the encoding's input
 * embedding and token head (with cell-level heads, {@link withCell}); the encoding's own class
 * (`plain`, rank + mlm: HF `BertForMaskedLM`) when there is no `cellfm.cell` block.
 */
const BUILDERS: Builder[] = ENCODINGS.flatMap((e) =>
  Object.entries(e.models).map(([objective, m]) => ({
    encoding: e.name,
    objective,
    architecture: m.architecture,
    build: (config: BertConfig, spec: ModelSpec, seed: number) =>
      m.plain && !spec.cell ? m.plain(config, seed) : new CellModel(config, { seed }, spec, m.embedding(spec), withCell(spec, m.head(spec))),
  })),
);

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
              likelihood: z.enum(LIKELIHOODS, { error: `cellfm.cell.bottleneck.likelihood: expected ${LIKELIHOODS.join(" | ")}` }),
              decoder: z.enum(BOTTLENECK_DECODERS, { error: `cellfm.cell.bottleneck.decoder: expected ${BOTTLENECK_DECODERS.join(" | ")}` }).optional(),
              batch_key: z.string({ error: "cellfm.cell.bottleneck.batch_key: expected an obs column name" }).optional(),
              batches: z.array(z.string(), { error: "cellfm.cell.bottleneck.batches: expected the batch categories, a list of strings" }).optional(),
            })
            .passthrough()
            .optional(),
          mvc: z
            .object({ target: z.string(), positions: z.string() }, { error: "cellfm.cell.mvc: expected a mapping (target, positions)" })
            .passthrough()
            .optional(),
          contrastive: z
            .object({
              temperature: z.number().positive({ error: "cellfm.cell.contrastive.temperature: expected a positive number" }),
              projection: z.enum(CONTRASTIVE_PROJECTIONS, { error: `cellfm.cell.contrastive.projection: expected ${CONTRASTIVE_PROJECTIONS.join(" | ")}` }),
            })
            .passthrough()
            .optional(),
        },
        { error: "cellfm.cell: expected a mapping (pooling, objectives, bottleneck, mvc, contrastive)" },
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
  if (!encodingByName(encoding)!.readsValues && (gene_embeddings || genomic_positions)) {
    const key = gene_embeddings ? "gene_embeddings" : "genomic_positions";
    const valued = ENCODINGS.filter((e) => e.readsValues);
    throw new Error(`cellfm.${key}: only for the ${valued.map((e) => e.key).join(" and ")} encodings (${valued.map((e) => e.name).join(", ")}), not ${encoding}`);
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
