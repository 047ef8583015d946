/**
 * The gene axis of a training run (issue 9 §4): external gene vectors (`model.gene_embeddings`), the
 * genomic-position encoding (`model.genomic_positions`) and held-out genes (`data.split.genes`).
 *
 * {@link prepareGeneAxis} reads and checks everything before the output folder is touched (a bad
 * gene-embedding file fails the run before training, naming `model.gene_embeddings.path` and the
 * line), lines the vectors up with the dataset's dictionary and chooses the held-out genes;
 * {@link applyGeneAxis} fills the model's fixed tables. The cells' contexts are filtered by
 * {@link filterCellGenes}: genes without a vector under `missing: drop` leave every context, held-out
 * genes leave the training contexts (and the ordinary validation contexts), and come back only in
 * the held-out-gene evaluation, where the loss is restricted to them ({@link restrictToGenes}).
 *
 * The counts (genes of the dataset with / without a vector, placed / unplaced, held out) go to the
 * start-of-run log, run.json, eval.json and config.json's `cellfm` block.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { matchGeneEmbeddings, readGeneEmbeddings } from "../data/gene-embeddings.js";
import { splitGenes, heldOutMask } from "../data/gene-split.js";
import { readGenomicPositions, SAME_POSITION_BP, tokenPositionTable } from "../data/genomic-positions.js";
import type { TokenizedManifest } from "../data/tokenized.js";
import type { CellModel, ModelSpec } from "../model/bert.js";
import { encodingByName } from "../encoding/index.js";
import { GeneValueEmbeddings } from "../model/value-model.js";
import { packagePath } from "../io.js";
import { loadGeneformerDictionaries, type Vocabulary } from "../tokenize/dictionaries.js";
import type { TrainConfig } from "./config.js";
import type { CollatedBatch } from "./objectives/index.js";

/** Counts of the gene axis, as written to run.json / eval.json (`gene_axis`). */
export interface GeneAxisReport {
  /** genes the dataset measured (manifest `measured_tokens`, else the genes seen in its cells). */
  n_dataset_genes: number;
  /** with `model.gene_embeddings`: dataset genes with / without a vector, file ids matching no dictionary gene. */
  n_with_vector?: number;
  n_without_vector?: number;
  n_file_ids_unused?: number;
  /** what genes without a vector get: "learned" (own learned row) or "drop" (removed from the contexts). */
  missing?: "learned" | "drop";
  /** with `model.genomic_positions`: dataset genes with / without a genomic location (those get a zero vector). */
  n_placed?: number;
  n_unplaced?: number;
  /** with `data.split.genes`: genes held out of every training context, and the fraction asked for. */
  n_held_out_genes?: number;
  held_out_fraction?: number;
}

/** What {@link prepareGeneAxis} found. */
export interface GeneAxis {
  /** spec fields for the model factory (and config.json `cellfm`): `gene_embeddings`, `genomic_positions`. */
  spec: Pick<ModelSpec, "gene_embeddings" | "genomic_positions">;
  /** `[vocab × dim]` vectors (scaled) and the has-a-vector flags, with `model.gene_embeddings`. */
  vectors?: { table: Float32Array; has: Uint8Array };
  /** `[vocab × hidden]` sinusoidal table, with `model.genomic_positions`. */
  positions?: Float32Array;
  /** `[vocab]` 1 = removed from every context (no vector, `missing: drop`). */
  dropped?: Uint8Array;
  /** `[vocab]` 1 = held-out gene (`data.split.genes`), and the held-out token ids (sorted). */
  heldOut?: Uint8Array;
  heldOutTokens?: Int32Array;
  report: GeneAxisReport;
  /** lines for the start-of-run log. */
  lines: string[];
  /** warnings for the start-of-run log (e.g. held-out genes without external gene embeddings). */
  warnings: string[];
}

/** The dataset's genes: `measured_tokens`, else every non-special token in its cells. */
function datasetGenes(manifest: TokenizedManifest, cells: readonly Int32Array[], vocabulary: Vocabulary): Int32Array {
  const special = new Set([vocabulary.pad, vocabulary.mask, vocabulary.cls, vocabulary.eos].filter((x) => x !== undefined));
  if (manifest.measured_tokens) return Int32Array.from(manifest.measured_tokens.filter((t) => !special.has(t))).sort();
  const seen = new Set<number>();
  for (const c of cells) for (const t of c) if (!special.has(t)) seen.add(t);
  return Int32Array.from(seen).sort();
}

function sha256Sync(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/**
 * Read, check and line up the gene-axis options of a run.
 * @param cells the dataset's token ids per cell (to find its genes when the manifest lists none)
 * @throws Error naming the key: `model.gene_embeddings.path` (missing file, wrong width, duplicate
 *   gene, non-number: with the file's line; no vector for any dataset gene), `model.gene_embeddings`
 *   / `model.genomic_positions` with the rank encoding, a dataset without a Geneformer dictionary.
 */
export function prepareGeneAxis(config: TrainConfig, manifest: TokenizedManifest, vocabulary: Vocabulary, cells: readonly Int32Array[], hiddenSize: number): GeneAxis {
  const src = config.source;
  const m = config.model;
  const encoding = manifest.encoding;
  const genes = datasetGenes(manifest, cells, vocabulary);
  const report: GeneAxisReport = { n_dataset_genes: genes.length };
  const out: GeneAxis = { spec: {}, report, lines: [], warnings: [] };
  const wantVectors = m.gene_embeddings !== undefined;
  if ((wantVectors || m.genomic_positions) && encodingByName(encoding)?.readsValues === false) {
    const key = wantVectors ? "model.gene_embeddings" : "model.genomic_positions";
    throw new Error(`${src}: ${key}: only for the binned and counts encodings (cellfm tokenize --encoding binned | counts); ${config.data.tokens} holds ${encoding} tokens, whose model has its own learned gene and position embeddings`);
  }
  let dict: Map<string, number> | undefined;
  const dictionary = (): Map<string, number> => {
    if (dict) return dict;
    const mv = manifest.model_version;
    if (mv !== "V1" && mv !== "V2") throw new Error(`${src}: model.gene_embeddings / model.genomic_positions need a dataset tokenized with a Geneformer dictionary (V1/V2); ${config.data.tokens} records ${JSON.stringify(mv)}`);
    dict = loadGeneformerDictionaries(mv).tokens;
    return dict;
  };

  if (m.gene_embeddings) {
    const ge = m.gene_embeddings;
    const key = `${src}: model.gene_embeddings.path`;
    let matched;
    let sha256: string;
    try {
      const emb = readGeneEmbeddings(ge.path);
      matched = matchGeneEmbeddings(emb, dictionary(), vocabulary.size);
      sha256 = sha256Sync(ge.path);
    } catch (e) {
      throw new Error(`${key}: ${(e as Error).message}`);
    }
    let withV = 0;
    for (const t of genes) if (matched.has[t]) withV++;
    if (withV === 0) {
      throw new Error(`${key}: ${ge.path} has no vector for any of the ${genes.length} genes of ${config.data.tokens} (ids must be Ensembl IDs or gene symbols of the ${manifest.model_version} dictionary)`);
    }
    // one global scale so the mean vector norm is 1: the projection then starts at the scale of a
    // learned embedding row (directions and relative norms are kept)
    let normSum = 0, nRows = 0;
    const D = matched.dim;
    for (let t = 0; t < vocabulary.size; t++) {
      if (!matched.has[t]) continue;
      let s = 0;
      for (let j = 0; j < D; j++) s += matched.table[t * D + j] ** 2;
      normSum += Math.sqrt(s);
      nRows++;
    }
    const scale = normSum > 0 ? nRows / normSum : 1;
    for (let i = 0; i < matched.table.length; i++) matched.table[i] *= scale;
    out.vectors = { table: matched.table, has: matched.has };
    report.n_with_vector = withV;
    report.n_without_vector = genes.length - withV;
    report.n_file_ids_unused = matched.unused.length;
    report.missing = ge.missing;
    out.spec.gene_embeddings = {
      dim: D,
      trainable: ge.trainable,
      missing: ge.missing,
      source: path.basename(ge.path),
      sha256,
      scale,
      n_with_vector: withV,
      n_without_vector: genes.length - withV,
    };
    if (ge.missing === "drop") {
      out.dropped = new Uint8Array(vocabulary.size);
      for (const t of genes) if (!matched.has[t]) out.dropped[t] = 1;
    }
    out.lines.push(
      `gene embeddings ${ge.path} (${D}-d, ${ge.trainable ? "trainable" : "frozen"}, sha256 ${sha256.slice(0, 12)}…): ` +
        `${withV} of ${genes.length} dataset genes have a vector, ${genes.length - withV} do not (${ge.missing === "drop" ? "dropped from every context" : "own learned embedding"}); ` +
        `${matched.unused.length} file ids match no ${manifest.model_version} dictionary gene`,
    );
  }

  if (m.genomic_positions) {
    const scale = m.genomic_positions === true ? 1 : m.genomic_positions.scale;
    const table = packagePath("data", "genes", "human_genes.tsv");
    const pos = readGenomicPositions(table);
    const tp = tokenPositionTable(dictionary(), vocabulary.size, hiddenSize, pos);
    if (scale !== 1) for (let i = 0; i < tp.table.length; i++) tp.table[i] *= scale;
    let placed = 0;
    for (const t of genes) if (tp.positionOfToken[t] > 0) placed++;
    out.positions = tp.table;
    report.n_placed = placed;
    report.n_unplaced = genes.length - placed;
    out.spec.genomic_positions = {
      source: "data/genes/human_genes.tsv",
      sha256: sha256Sync(table),
      same_position_bp: SAME_POSITION_BP,
      scale,
      n_positions: pos.maxPosition,
      n_placed: placed,
      n_unplaced: genes.length - placed,
      fallback: "genes without a location get a zero vector",
    };
    out.lines.push(`genomic positions (data/genes/human_genes.tsv, genes within ${SAME_POSITION_BP / 1000} kb share one${scale !== 1 ? `, table x ${scale}` : ""}): ${placed} of ${genes.length} dataset genes placed, ${genes.length - placed} without a location (zero vector)`);
  }

  const frac = config.data.split.genes;
  if (frac > 0) {
    // genes that can be generalised to: with external vectors, only genes that have one
    const cand = out.vectors ? genes.filter((t) => out.vectors!.has[t]) : genes;
    const s = splitGenes(cand, frac, config.data.split_seed);
    out.heldOutTokens = s.heldOut;
    out.heldOut = heldOutMask(s.heldOut, vocabulary.size);
    report.n_held_out_genes = s.heldOut.length;
    report.held_out_fraction = frac;
    out.lines.push(
      `held-out genes (data.split.genes ${frac}): ${s.heldOut.length} of ${cand.length} ${out.vectors ? "genes with a vector" : "dataset genes"} never enter a training context; scored on the held-out cells`,
    );
    if (!out.vectors) {
      out.warnings.push(
        `warning: ${src}: data.split.genes without model.gene_embeddings: a held-out gene's learned embedding is never trained (it stays a random row), ` +
          `so the held-out-gene loss only shows what the model infers from the gene's observed value and its context, not generalisation to unseen genes; use external gene vectors (model.gene_embeddings)`,
      );
    }
  }
  return out;
}

/**
 * Fill a freshly built model's gene-vector and genomic-position tables.
 * @throws Error when the model lacks a table the axis needs (it was built from another spec)
 */
export function applyGeneAxis(model: CellModel, axis: GeneAxis): void {
  if (!axis.vectors && !axis.positions) return;
  const emb = model.embeddings;
  if (!(emb instanceof GeneValueEmbeddings)) throw new Error("gene embeddings / genomic positions need a binned or counts model");
  if (axis.vectors) emb.setGeneVectors(axis.vectors.table, axis.vectors.has);
  if (axis.positions) emb.setGenomicPositions(axis.positions);
}

/**
 * One cell without the masked genes.
 * @param remove `[vocab]` masks, 1 = remove (undefined masks are skipped)
 * @param counts optional raw counts aligned with `ids` (binned datasets), filtered alike
 * @returns the input arrays themselves when nothing is removed
 */
export function filterCellGenes(
  ids: Int32Array,
  values: Float32Array | undefined,
  remove: readonly (Uint8Array | undefined)[],
  counts?: Float32Array,
): { ids: Int32Array; values: Float32Array | undefined; counts: Float32Array | undefined } {
  const masks = remove.filter((x): x is Uint8Array => x !== undefined);
  if (masks.length === 0) return { ids, values, counts };
  const keep = (t: number) => masks.every((mk) => !mk[t]);
  let k = 0;
  for (const t of ids) if (keep(t)) k++;
  if (k === ids.length) return { ids, values, counts };
  const oi = new Int32Array(k);
  const ov = values ? new Float32Array(k) : undefined;
  const oc = counts ? new Float32Array(k) : undefined;
  let j = 0;
  for (let i = 0; i < ids.length; i++) {
    if (!keep(ids[i])) continue;
    oi[j] = ids[i];
    if (ov) ov[j] = values![i];
    if (oc) oc[j] = counts![i];
    j++;
  }
  return { ids: oi, values: ov, counts: oc };
}

/**
 * A copy of a collated batch whose loss positions are only those of the given genes.
 * @param genes `[vocab]` 1 = keep
 * @param byLabel the gene at a position is its label (rank MLM: the input may be `<mask>` or a random
 *   token) rather than its input id (value encodings, denoising)
 */
export function restrictToGenes(b: CollatedBatch, genes: Uint8Array, byLabel: boolean): CollatedBatch {
  const keep: number[] = [];
  b.positions.forEach((p, j) => {
    const g = byLabel ? b.labels![j] : b.inputIds[p];
    if (genes[g]) keep.push(j);
  });
  return {
    ...b,
    positions: Int32Array.from(keep, (j) => b.positions[j]),
    ...(b.labels ? { labels: Int32Array.from(keep, (j) => b.labels![j]) } : {}),
    ...(b.targets ? { targets: Float32Array.from(keep, (j) => b.targets![j]) } : {}),
  };
}
