/**
 * Minimal AnnData `.h5ad` writer for cell embeddings: `obs` (cell ids as index + carried columns),
 * an empty `var`, and `obsm/X_cellfm` `[nCells, hidden]` float32, with the AnnData on-disk encoding
 * attributes (anndata "Element specification" v0.1/0.2: `encoding-type`, `encoding-version`), so
 * `anndata.read_h5ad` / scanpy read it. No `X` is written (anndata ≥ 0.8 allows X = None).
 * Uses h5wasm's Node build; the file is written under a temporary name and renamed when complete.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import h5wasm from "h5wasm/node";
import type { Group as H5Group } from "h5wasm/node";
import { h5Ready, hdf5Reason } from "../data/h5ad.js";
import { assertWritable, fsyncFile, libraryWriteError } from "../io.js";
import type { ObsTable } from "../data/types.js";

function encode(g: { create_attribute: H5Group["create_attribute"] }, type: string, version: string): void {
  g.create_attribute("encoding-type", type);
  g.create_attribute("encoding-version", version);
}

/**
 * Write an `.h5ad` holding obs and `obsm[key]`.
 * @param file output path (refused if it exists, unless `force`)
 * @param e.obs obs table (`index` = cell ids; string, float64 and boolean columns)
 * @param e.embedding row-major float32 `[nCells * dim]`
 * @param e.uns optional string → string pairs written to `uns/cellfm`
 * @throws Error when the file exists without `force`, or sizes disagree.
 */
export async function writeEmbeddingH5ad(
  file: string,
  e: { obs: ObsTable; embedding: Float32Array; dim: number; key?: string; uns?: Record<string, string> },
  opts: { force?: boolean } = {},
): Promise<void> {
  const n = e.obs.index.length;
  if (e.embedding.length !== n * e.dim) throw new Error(`${file}: embedding has ${e.embedding.length} values, expected ${n} x ${e.dim}`);
  assertWritable(file, opts.force ?? false, { kind: "file" });
  await h5Ready(); // HDF5 errors (a full disk included) throw instead of printing a trace
  const abs = path.resolve(file);
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  let h5: InstanceType<typeof h5wasm.File>;
  try {
    h5 = new h5wasm.File(tmp, "w");
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw libraryWriteError(err, abs, hdf5Reason(err));
  }
  try {
    encode(h5, "anndata", "0.1.0");
    // obs
    const obs = h5.create_group("obs");
    encode(obs, "dataframe", "0.2.0");
    obs.create_attribute("_index", "_index");
    const names = Object.keys(e.obs.columns);
    if (names.length > 0) obs.create_attribute("column-order", names);
    else obs.create_attribute("column-order", new Float64Array(0));
    encode(obs.create_dataset({ name: "_index", data: e.obs.index }), "string-array", "0.2.0");
    for (const name of names) {
      const col = e.obs.columns[name];
      if (col.length !== n) throw new Error(`${file}: obs column ${name} has ${col.length} values, expected ${n}`);
      if (col instanceof Float64Array) {
        encode(obs.create_dataset({ name, data: col }), "array", "0.2.0");
      } else if (col.length > 0 && typeof col[0] === "boolean") {
        // h5wasm cannot write HDF5 bool enums: stored as int8 0/1
        encode(obs.create_dataset({ name, data: Int8Array.from(col as boolean[], (b) => (b ? 1 : 0)) }), "array", "0.2.0");
      } else {
        // strings as a string array (h5wasm cannot write the bool `ordered` attribute of a categorical)
        encode(obs.create_dataset({ name, data: (col as unknown[]).map((v) => (v == null ? "" : String(v))) }), "string-array", "0.2.0");
      }
    }
    // var: no genes
    const v = h5.create_group("var");
    encode(v, "dataframe", "0.2.0");
    v.create_attribute("_index", "_index");
    v.create_attribute("column-order", new Float64Array(0));
    // an empty *string* index: a float64 one makes anndata warn "Transforming to str index"
    encode(v.create_dataset({ name: "_index", data: [] as string[], dtype: "S" } as never), "string-array", "0.2.0");
    // obsm
    const obsm = h5.create_group("obsm");
    encode(obsm, "dict", "0.1.0");
    encode(obsm.create_dataset({ name: e.key ?? "X_cellfm", data: e.embedding, shape: [n, e.dim], dtype: "<f" }), "array", "0.2.0");
    for (const g of ["layers", "obsp", "varm", "varp"]) encode(h5.create_group(g), "dict", "0.1.0");
    const uns = h5.create_group("uns");
    encode(uns, "dict", "0.1.0");
    if (e.uns) {
      const c = uns.create_group("cellfm");
      encode(c, "dict", "0.1.0");
      for (const [k, val] of Object.entries(e.uns)) encode(c.create_dataset({ name: k, data: val }), "string", "0.2.0");
    }
  } catch (err) {
    try {
      h5.close();
    } catch {
      /* reporting the first error */
    }
    fs.rmSync(tmp, { force: true });
    throw String((err as Error)?.message).includes("HDF5-DIAG") ? libraryWriteError(err, abs, hdf5Reason(err)) : err;
  }
  try {
    // close flushes HDF5's buffers: its errors are write errors too; then to disk before the rename
    if (h5.close() < 0) throw new Error("closing the HDF5 file failed");
    fsyncFile(tmp);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw String((err as Error)?.message).startsWith(abs) ? err : libraryWriteError(err, abs, hdf5Reason(err));
  }
  if (fs.existsSync(abs) && !opts.force) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`output ${file} already exists; pass --force to replace it`);
  }
  fs.renameSync(tmp, abs);
}
