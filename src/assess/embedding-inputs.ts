/**
 * The embeddings `cellfm assess` scores: cellfm's Arrow files (`cellfm embed -o`) and any `.h5ad`
 * with embeddings in `obsm` (`--obsm X_scVI,X_pca,X_cellfm`: scVI, PCA, scGPT/scPRINT/Geneformer
 * embeddings stored the scanpy way), each one row of the report next to HVG + PCA.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import h5wasm from "h5wasm/node";
import type { Dataset as H5Dataset, Group as H5Group } from "h5wasm/node";
import { readEmbeddings, type LoadedEmbeddings } from "../data/embeddings.js";
import { h5Ready, isHdf5File } from "../data/h5ad.js";

/** One embedding to score. */
export interface EmbeddingInput {
  /** display name (report row). */
  name: string;
  /** the file it came from. */
  file: string;
  /** `obsm` key for `.h5ad` inputs. */
  obsmKey?: string;
  e: LoadedEmbeddings;
}

/** Row names: the obsm key alone when one `.h5ad` is given, else `<file>:<key>`; Arrow files by file name. */
function defaultName(file: string, key: string | undefined, h5adFiles: number): string {
  const base = path.basename(file).replace(/\.[^.]+$/, "");
  if (key === undefined) return base;
  return h5adFiles > 1 ? `${base}:${key}` : key;
}

/**
 * Read `obsm[key]` of an `.h5ad` as float32 embeddings with the file's obs names as cell ids.
 * @throws Error naming the file and key: no obsm, the key absent (listing the keys there), or not a
 *   dense 2-D numeric array (e.g. a sparse matrix or a dataframe in obsm).
 */
export async function readObsmEmbeddings(file: string, key: string): Promise<LoadedEmbeddings> {
  await h5Ready();
  const h5 = new h5wasm.File(file, "r");
  try {
    const obsm = h5.get("obsm") as H5Group | null;
    const keys = obsm instanceof h5wasm.Group ? obsm.keys() : [];
    if (!keys.includes(key)) throw new Error(`${file}: no obsm["${key}"] (--obsm); obsm keys in the file: ${keys.join(", ") || "none"}`);
    const d = obsm!.get(key);
    if (!(d instanceof h5wasm.Dataset)) throw new Error(`${file}: obsm["${key}"] is not a dense array (a sparse matrix or a dataframe); cellfm assess scores dense embeddings`);
    const ds = d as H5Dataset;
    const shape = ds.shape ?? [];
    if (shape.length !== 2) throw new Error(`${file}: obsm["${key}"] has shape [${shape.join(", ")}], expected cells x dimensions`);
    const raw = ds.value as ArrayLike<number | bigint>;
    const data = raw instanceof Float32Array ? raw : Float32Array.from(raw as ArrayLike<number>, Number);
    const obs = h5.get("obs") as H5Group | null;
    if (!(obs instanceof h5wasm.Group)) throw new Error(`${file}: no obs (not an AnnData file)`);
    const indexName = String(obs.attrs["_index"]?.value ?? "_index");
    const idx = obs.get(indexName);
    if (!(idx instanceof h5wasm.Dataset)) throw new Error(`${file}: obs has no index dataset "${indexName}"`);
    const cellIds = Array.from((idx as H5Dataset).value as ArrayLike<unknown>, (v) => String(v));
    if (cellIds.length !== shape[0]) throw new Error(`${file}: obsm["${key}"] has ${shape[0]} rows but obs has ${cellIds.length} cells`);
    // all-NaN rows are cells without an embedding (cellfm embed --h5ad marks them so): left out, as
    // cells missing from an Arrow file are
    const dim = shape[1];
    const keep: number[] = [];
    for (let r = 0; r < cellIds.length; r++) {
      let allNaN = dim > 0;
      for (let j = 0; j < dim && allNaN; j++) allNaN = Number.isNaN(data[r * dim + j]);
      if (!allNaN) keep.push(r);
    }
    const ids = keep.length === cellIds.length ? cellIds : keep.map((r) => cellIds[r]);
    const kept = keep.length === cellIds.length ? data : new Float32Array(keep.length * dim);
    if (kept !== data) keep.forEach((r, i) => kept.set(data.subarray(r * dim, (r + 1) * dim), i * dim));
    return { cellIds: ids, dim, data: kept, obs: { index: ids, columns: {} }, meta: { source_file: path.resolve(file), obsm_key: key } };
  } finally {
    h5.close();
  }
}

/**
 * Resolve `--embeddings` (+ `--obsm`, `--embedding-names`) into the embeddings to score, in order:
 * each Arrow file one row; each `.h5ad` one row per `--obsm` key.
 * @throws Error naming the file: missing, neither Arrow nor HDF5, an `.h5ad` without `--obsm`, a key
 *   it lacks; or names that do not match the rows or repeat.
 */
export async function readEmbeddingInputs(files: string[], obsmKeys: string[] | undefined, names: string[] | undefined): Promise<EmbeddingInput[]> {
  const isH5 = files.map((f) => {
    if (!fs.existsSync(f)) throw new Error(`embeddings file ${f} does not exist`);
    return isHdf5File(f);
  });
  const nH5 = isH5.filter(Boolean).length;
  if (obsmKeys?.length && nH5 === 0) throw new Error(`--obsm ${obsmKeys.join(",")} names obsm keys, but no --embeddings file is an .h5ad`);
  const out: EmbeddingInput[] = [];
  for (let f = 0; f < files.length; f++) {
    const file = files[f];
    if (isH5[f]) {
      if (!obsmKeys?.length) throw new Error(`${file} is an .h5ad: name the embeddings to score with --obsm (e.g. --obsm X_cellfm,X_pca)`);
      for (const key of obsmKeys) out.push({ name: defaultName(file, key, nH5), file, obsmKey: key, e: await readObsmEmbeddings(file, key) });
      continue;
    }
    let e: LoadedEmbeddings;
    try {
      e = readEmbeddings(file);
    } catch (err) {
      const m = (err as Error).message;
      if (/not a readable Arrow IPC file/.test(m)) {
        throw new Error(`${file}: neither a cellfm embeddings file (Arrow IPC from cellfm embed) nor an .h5ad with obsm embeddings`);
      }
      throw err;
    }
    out.push({ name: defaultName(file, undefined, nH5), file, e });
  }
  if (names?.length) {
    if (names.length !== out.length) {
      throw new Error(`--embedding-names has ${names.length} names for ${out.length} embeddings (${out.map((x) => x.name).join(", ")})`);
    }
    names.forEach((n, i) => (out[i].name = n));
  }
  const seen = new Set<string>();
  for (const x of out) {
    if (seen.has(x.name)) throw new Error(`embedding names must be distinct (got ${out.map((y) => y.name).join(", ")}); use --embedding-names`);
    seen.add(x.name);
  }
  return out;
}
