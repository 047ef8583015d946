/**
 * Pieces the encodings' model builders share: the head options of a spec (`cellfm.head`), the gene
 * identity of the value encodings' input embedding (`cellfm.gene_embeddings`, `cellfm.genomic_positions`)
 * and the denoising model (any input embedding + scPRINT's count head).
 */
import type { EmbeddingFactory, ModelSpec } from "../model/bert.js";
import { LIKELIHOODS, type Likelihood } from "../model/likelihoods.js";
import { DenoiseHead, type GeneIdentityOptions } from "../model/value-model.js";
import type { EncodingModel } from "./types.js";

/** `cellfm.head.n_bins` of a spec, or `fallback` when absent. @throws Error when not an integer >= 2. */
export function nBinsOf(spec: Pick<ModelSpec, "head">, fallback: number): number {
  const n = spec.head?.n_bins ?? fallback;
  if (!Number.isInteger(n) || (n as number) < 2) throw new Error(`cellfm.head.n_bins: expected an integer >= 2, got ${JSON.stringify(n)}`);
  return n as number;
}

/** `cellfm.head.likelihood` of a spec (default zinb). @throws Error when not zinb | nb | poisson. */
export function likelihoodOf(spec: Pick<ModelSpec, "head">): Likelihood {
  const l = spec.head?.likelihood ?? LIKELIHOODS[0];
  if (!(LIKELIHOODS as readonly unknown[]).includes(l)) throw new Error(`cellfm.head.likelihood: expected one of ${LIKELIHOODS.join(" | ")}, got ${JSON.stringify(l)}`);
  return l as Likelihood;
}

/** The gene-identity options of a spec (`cellfm.gene_embeddings`, `cellfm.genomic_positions`). */
export function geneIdentityOf(spec: Pick<ModelSpec, "gene_embeddings" | "genomic_positions">): GeneIdentityOptions {
  const g = spec.gene_embeddings;
  return {
    ...(g ? { vectors: { dim: g.dim, trainable: g.trainable, missing: g.missing } } : {}),
    ...(spec.genomic_positions ? { genomicPositions: true } : {}),
  };
}

/** A denoising model (scPRINT's count head, `cellfm.head.likelihood`) on an encoding's input embedding. */
export function denoiseModel(architecture: string, embedding: (spec: ModelSpec) => EmbeddingFactory): EncodingModel {
  return { architecture, embedding, head: (spec) => (c, p) => new DenoiseHead(c, p, likelihoodOf(spec)) };
}
