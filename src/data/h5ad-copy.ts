/**
 * Copies of a user's AnnData `.h5ad` with cellfm's results added, the way scanpy users expect them:
 * everything of the input (X, layers, obs with its categoricals, var, obsm, uns) kept byte for byte,
 * the result added as `obsm[key]` or `layers[name]` with provenance under `uns[<group>]`.
 * `cellfm embed --h5ad` and `cellfm denoise` write through here. The copy is made under a
 * temporary name and renamed when complete (`src/io.ts` conventions), so a failed write leaves nothing.
 *
 * Encoding: AnnData's on-disk format ("Element specification": `encoding-type` / `encoding-version`
 * attributes; https://anndata.readthedocs.io/en/latest/fileformat-prose.html), as anndata ≥ 0.8 writes it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import h5wasm from "h5wasm/node";
import type { File as H5File, Group as H5Group } from "h5wasm/node";
import { h5Ready, hdf5Reason } from "./h5ad.js";
import { fsErrorMessage, fsyncFile, libraryWriteError } from "../io.js";

/** Set AnnData's encoding attributes on a group or dataset. */
export function encodeAs(g: { create_attribute: H5Group["create_attribute"] }, type: string, version: string): void {
  g.create_attribute("encoding-type", type);
  g.create_attribute("encoding-version", version);
}

/** The top-level group `name` of an AnnData file, created (as an AnnData dict) when absent. */
export function topGroup(h5: H5File, name: "obsm" | "layers" | "uns" | "varm"): H5Group {
  const g = h5.get(name) as H5Group | null;
  if (g) return g;
  const made = h5.create_group(name);
  encodeAs(made, "dict", "0.1.0");
  return made;
}

/**
 * Add `obsm[key]`: a dense float32 `[nCells, dim]` array (row-major).
 * @throws Error naming the file when `obsm[key]` exists already or the size is wrong.
 */
export function addObsm(h5: H5File, file: string, key: string, data: Float32Array, nCells: number, dim: number): void {
  if (data.length !== nCells * dim) throw new Error(`${file}: obsm["${key}"] has ${data.length} values, expected ${nCells} x ${dim}`);
  const obsm = topGroup(h5, "obsm");
  if (obsm.keys().includes(key)) throw new Error(`${file} already has obsm["${key}"]; choose another key (--obsm-key) or start from a file without it`);
  encodeAs(obsm.create_dataset({ name: key, data, shape: [nCells, dim], dtype: "<f" }), "array", "0.2.0");
}

/**
 * Add `uns[group]` holding string values (provenance: checkpoint, settings, version, time).
 * An existing `uns[group]` (an earlier run's) is left as it is and the new one gets a numbered name.
 * @returns the name used.
 */
export function addUnsStrings(h5: H5File, group: string, meta: Record<string, string>): string {
  const uns = topGroup(h5, "uns");
  let name = group;
  for (let i = 2; uns.keys().includes(name); i++) name = `${group}_${i}`;
  const u = uns.create_group(name);
  encodeAs(u, "dict", "0.1.0");
  for (const [k, v] of Object.entries(meta)) encodeAs(u.create_dataset({ name: k, data: v }), "string", "0.2.0");
  return name;
}

/**
 * Write `output` as a copy of the `.h5ad` `input` changed by `edit` (which adds obsm/layers/uns
 * entries through the helpers above). Written under `<output>.tmp-<pid>-<ms>` and renamed when
 * complete; on an error nothing is left.
 * @throws Error from `edit`, or when `output` appeared meanwhile and `force` is not set.
 */
export async function writeH5adCopy(input: string, output: string, edit: (h5: H5File) => void, opts: { force?: boolean } = {}): Promise<void> {
  const abs = path.resolve(output);
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  try {
    try {
      fs.copyFileSync(input, tmp);
    } catch (e) {
      throw fsErrorMessage(e, abs);
    }
    await h5Ready(); // HDF5 errors (a full disk included) throw instead of printing a trace
    const h5 = new h5wasm.File(tmp, "a");
    let closed = false;
    try {
      edit(h5);
      // close flushes HDF5's buffers: its errors are write errors too; then to disk before the rename
      closed = true;
      if (h5.close() < 0) throw new Error("closing the HDF5 file failed");
      fsyncFile(tmp);
    } catch (e) {
      if (!closed) {
        try {
          h5.close();
        } catch {
          /* reporting the first error */
        }
      }
      const msg = String((e as Error)?.message);
      throw msg.includes("HDF5-DIAG") || msg.startsWith("closing the HDF5") ? libraryWriteError(e, abs, hdf5Reason(e)) : e;
    }
    if (fs.existsSync(abs) && !opts.force) throw new Error(`output ${output} already exists; pass --force to replace it`);
    fs.renameSync(tmp, abs);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
