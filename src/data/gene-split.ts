/**
 * Holding out genes (`data.split: {cells, genes}`): a fraction of the vocabulary genes never enters a
 * training context, so a model with external gene embeddings (`model.gene_embeddings`) can be scored on
 * genes it has not seen. Only meaningful with external gene embeddings: a learned gene-token embedding
 * of a held-out gene stays at its initial value.
 *
 * A gene's rank in the draw comes from a generator seeded with the split seed and its token id, so the
 * held-out set depends on the seed, the fraction and the set of candidate genes only, never on their order
 * (the genes with the lowest draws are held out).
 */
import { makeRng } from "../rng.js";

/** A gene split: sorted token ids. */
export interface GeneSplit {
  train: Int32Array;
  heldOut: Int32Array;
}

/**
 * Split candidate genes into training and held-out genes.
 * @param tokens candidate token ids (e.g. the dataset's `manifest.measured_tokens`), distinct.
 * @param fraction share held out, in [0, 1); round(n·fraction) genes (at least 1 when fraction > 0 and n > 1).
 * @param seed split seed.
 * @throws Error on a fraction outside [0, 1) or duplicate tokens.
 */
export function splitGenes(tokens: ArrayLike<number>, fraction: number, seed: number): GeneSplit {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`data.split.genes must be in [0, 1), got ${fraction}`);
  const n = tokens.length;
  const keyed = Array.from({ length: n }, (_, i) => ({ t: tokens[i], u: makeRng(`${seed}:gene-split:${tokens[i]}`)() }));
  if (new Set(keyed.map((k) => k.t)).size !== n) throw new Error("splitGenes: duplicate token ids among the candidate genes");
  keyed.sort((a, b) => a.u - b.u || a.t - b.t);
  let nOut = Math.round(n * fraction);
  if (fraction > 0 && nOut === 0 && n > 1) nOut = 1;
  const heldOut = Int32Array.from(keyed.slice(0, nOut), (k) => k.t).sort();
  const train = Int32Array.from(keyed.slice(nOut), (k) => k.t).sort();
  return { train, heldOut };
}

/**
 * Remove held-out genes from one cell (its ids and aligned values).
 * @param heldOut `[vocabSize]` mask, 1 = held out.
 * @returns new arrays without the held-out genes.
 */
export function dropGenes(ids: Int32Array, values: Float32Array, heldOut: Uint8Array): { ids: Int32Array; values: Float32Array } {
  if (ids.length !== values.length) throw new Error(`dropGenes: ${ids.length} ids but ${values.length} values`);
  let k = 0;
  for (let i = 0; i < ids.length; i++) if (!heldOut[ids[i]]) k++;
  const outIds = new Int32Array(k);
  const outVals = new Float32Array(k);
  let j = 0;
  for (let i = 0; i < ids.length; i++) {
    if (heldOut[ids[i]]) continue;
    outIds[j] = ids[i];
    outVals[j++] = values[i];
  }
  return { ids: outIds, values: outVals };
}

/** The `[vocabSize]` mask of a held-out list. */
export function heldOutMask(heldOut: ArrayLike<number>, vocabSize: number): Uint8Array {
  const m = new Uint8Array(vocabSize);
  for (let i = 0; i < heldOut.length; i++) {
    const t = heldOut[i];
    if (!(t >= 0 && t < vocabSize)) throw new Error(`heldOutMask: token id ${t} is outside 0 … ${vocabSize - 1}`);
    m[t] = 1;
  }
  return m;
}
