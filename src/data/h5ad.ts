/**
 * AnnData `.h5ad` reader on h5wasm's Node build (HDF5 compiled to WebAssembly; the file is read in
 * slices from disk, never loaded whole).
 *
 * Follows the AnnData on-disk specification (anndata.readthedocs.io, "On-disk format"):
 * `X` (or `layers/<name>`, or `raw/X`) is a group with `encoding-type` `csr_matrix` / `csc_matrix`
 * (`data`, `indices`, `indptr`, attribute `shape`) or a dense 2-D dataset; `obs`/`var` are dataframe
 * groups (attribute `_index` names the index dataset, `column-order` lists the columns; columns are
 * plain datasets, `categorical` groups with `codes` + `categories`, or `nullable-*` groups with
 * `values` + `mask`).
 *
 * CSR and dense matrices are streamed in blocks of cells (CSR: `indptr` is read once, then the
 * `data`/`indices` slice of each block), so memory stays bounded whatever the file size. CSC files
 * (rare for cells × genes) are read whole and converted to CSR.
 */
import * as fs from "node:fs";
import h5wasm from "h5wasm/node";
import type { Dataset as H5Dataset, File as H5File, Group as H5Group, BrokenSoftLink, ExternalLink, Datatype } from "h5wasm/node";
import { canonicalRows, checkedIndices, checkIndptr } from "./validate.js";
import { selectedBlocks, type ChunkSelection, type CountMatrixSource, type CsrChunk, type ObsTable, type ObsValues, type VarTable } from "./types.js";

/** Options shared by the count-matrix readers. */
export interface OpenCountsOptions {
  /** read `layers/<layer>` instead of `X`. */
  layer?: string;
  /** read `raw/X` (with `raw/var`) instead of `X`. */
  useRaw?: boolean;
  /** accept non-integer values (e.g. ambient-corrected counts); otherwise they are an error. */
  allowNonInteger?: boolean;
}

const HDF5_MAGIC = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** True when the file carries the HDF5 signature (at offset 0, 512, 1024, ... as the HDF5 spec allows). */
export function isHdf5File(file: string): boolean {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(8);
    for (let off = 0; off + 8 <= size && off <= 1 << 20; off = off === 0 ? 512 : off * 2) {
      fs.readSync(fd, buf, 0, 8, off);
      if (buf.equals(HDF5_MAGIC)) return true;
    }
    return false;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The end-of-file address an HDF5 file's superblock records (base address + EOF address), or
 * undefined when the superblock cannot be parsed. A file shorter than this was truncated (an
 * interrupted download or copy). Layout: HDF5 File Format Specification, "Superblock" (version 0/1:
 * the EOF address is the third address after 16 (v0) or 20 (v1) bytes of fields; version 2/3: the
 * second address after the 4 one-byte fields).
 */
export function hdf5EndOfFile(file: string): number | undefined {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(96);
    for (let off = 0; off + 8 <= size && off <= 1 << 20; off = off === 0 ? 512 : off * 2) {
      const got = fs.readSync(fd, buf, 0, 96, off);
      if (got < 8 || !buf.subarray(0, 8).equals(HDF5_MAGIC)) continue;
      const version = buf[8];
      const sizeOfOffsets = version <= 1 ? buf[13] : buf[9];
      if (sizeOfOffsets !== 8 && sizeOfOffsets !== 4) return undefined;
      const addr = (at: number) => (sizeOfOffsets === 8 ? Number(buf.readBigUInt64LE(at)) : buf.readUInt32LE(at));
      const first = version === 0 ? 24 : version === 1 ? 28 : version <= 3 ? 12 : -1;
      if (first < 0 || first + 4 * sizeOfOffsets > got) return undefined;
      const base = addr(first);
      const eof = addr(first + 2 * sizeOfOffsets); // the third address in both layouts
      return base + eof;
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * One line for an HDF5 library error: h5wasm's throwing error handler (activated in
 * {@link h5Ready}, so HDF5 prints no "HDF5-DIAG" trace on the console) puts the whole trace in the
 * message; this keeps the innermost reason. With `--verbose` (`CELLFM_VERBOSE=1`) the full trace
 * is printed to stderr.
 */
export function hdf5Reason(e: unknown): string {
  const msg = String((e as Error)?.message ?? e);
  if (!msg.includes("HDF5-DIAG")) return msg.split("\n")[0];
  if (process.env.CELLFM_VERBOSE === "1") process.stderr.write(msg.endsWith("\n") ? msg : msg + "\n");
  const reasons = [...msg.matchAll(/ in ([\w]+)\(\): (.+)$/gm)].map((m) => `${m[1]}: ${m[2].trim()}`);
  return reasons.length ? reasons[reasons.length - 1] : "HDF5 error";
}

type H5Obj = H5Group | H5Dataset | BrokenSoftLink | ExternalLink | Datatype | null;

function attr(o: { attrs: Record<string, { value: unknown }> } | null | undefined, name: string): unknown {
  if (!o) return undefined;
  const a = o.attrs[name];
  if (!a) return undefined;
  const v = a.value;
  return typeof v === "bigint" ? Number(v) : v;
}

/** Convert any numeric typed array (incl. BigInt64) to float64. */
export function toFloat64(a: unknown): Float64Array {
  if (a instanceof Float64Array) return a;
  if (a instanceof BigInt64Array || a instanceof BigUint64Array) {
    const out = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
    return out;
  }
  if (ArrayBuffer.isView(a) && !(a instanceof DataView)) return new Float64Array(a as unknown as ArrayLike<number>); // typed-array copy constructor: fast native conversion
  if (Array.isArray(a)) return Float64Array.from(a, (v) => (typeof v === "boolean" ? (v ? 1 : 0) : Number(v)));
  if (typeof a === "number" || typeof a === "bigint") return Float64Array.of(Number(a));
  throw new Error("not a numeric array");
}

function isBoolEnum(ds: H5Dataset): boolean {
  const m = ds.metadata;
  const members = m.enum_type?.members;
  return m.type === 8 && members !== undefined && "FALSE" in members && "TRUE" in members;
}

/**
 * Read one AnnData dataframe column (obs or var). Categorical columns are decoded to strings
 * (missing code -1 → ""); booleans become `boolean[]`; numbers `Float64Array` (nullable: masked → NaN).
 */
function readColumn(file: string, group: H5Group, name: string): ObsValues {
  const o = group.get(name) as H5Obj;
  const where = `${file}: ${group.path}/${name}`;
  if (o instanceof h5wasm.Dataset) {
    checkDecodable(file, `${group.path.replace(/^\//, "")}/${name}`, o, false);
    if (isBoolEnum(o)) return (o.json_value as boolean[]).map(Boolean);
    const v = o.value;
    if (Array.isArray(v)) return v.map((s) => String(s));
    if (typeof v === "string") return [v];
    return toFloat64(v);
  }
  if (o instanceof h5wasm.Group) {
    const enc = attr(o, "encoding-type");
    if (enc === "categorical") {
      const codes = toFloat64((o.get("codes") as H5Dataset).value);
      const cats = readColumn(file, o, "categories");
      const catStr = Array.isArray(cats) ? cats.map(String) : Array.from(cats as Float64Array, String);
      const out = new Array<string>(codes.length);
      for (let i = 0; i < codes.length; i++) {
        const c = codes[i];
        if (!(c >= -1 && c < catStr.length) || !Number.isInteger(c)) {
          throw new Error(`${where}/codes[${i}] = ${c} but the column has ${catStr.length} categories (first bad index ${i}; codes run from 0, -1 = missing)`);
        }
        out[i] = c < 0 ? "" : catStr[c];
      }
      return out;
    }
    if (enc === "nullable-integer" || enc === "nullable-boolean") {
      const vds = o.get("values") as H5Dataset;
      const mask = toFloat64(isBoolEnum(o.get("mask") as H5Dataset) ? (o.get("mask") as H5Dataset).json_value : (o.get("mask") as H5Dataset).value);
      const vals = toFloat64(isBoolEnum(vds) ? vds.json_value : vds.value);
      if (enc === "nullable-boolean") return Array.from(vals, (x, i) => (mask[i] ? false : x !== 0));
      for (let i = 0; i < vals.length; i++) if (mask[i]) vals[i] = NaN;
      return vals;
    }
    if (enc === "nullable-string-array") {
      const v = (o.get("values") as H5Dataset).value as string[];
      const mask = toFloat64((o.get("mask") as H5Dataset).value);
      return v.map((s, i) => (mask[i] ? "" : String(s)));
    }
    throw new Error(`${where}: unsupported column encoding "${String(enc)}"`);
  }
  throw new Error(`${where}: not found`);
}

/** Read an AnnData dataframe group (`obs`, `var` or `raw/var`): index and every column. */
function readDataframe(file: string, h5: H5File, key: string, n: number, isOpen: () => boolean = () => true): ObsTable {
  const g = h5.get(key);
  if (!(g instanceof h5wasm.Group)) {
    return { index: Array.from({ length: n }, (_, i) => String(i)), columns: {} };
  }
  const indexName = String(attr(g, "_index") ?? "_index");
  const idx = g.get(indexName);
  let index: string[] | undefined;
  const readIndex = (): string[] => {
    if (index) return index;
    if (!isOpen()) throw new Error(`${file}: ${key} index was first read after close(); read it before closing the source`);
    if (idx) {
      const v = readColumn(file, g, indexName);
      index = Array.isArray(v) ? v.map(String) : Array.from(v as Float64Array, String);
    } else index = Array.from({ length: n }, (_, i) => String(i));
    if (index.length !== n) throw new Error(`${file}: ${key} has ${index.length} rows but the matrix has ${n}`);
    return index;
  };
  let order = attr(g, "column-order");
  if (typeof order === "string") order = order === "" ? [] : [order];
  const names = Array.isArray(order) && order.length > 0 ? (order as string[]) : g.keys().filter((k) => k !== indexName && k !== "__categories");
  // Columns are read lazily (on first access, then cached): string columns are slow to decode in
  // h5wasm and most runs need only a few of them. The file must stay open while columns are read.
  const columns: Record<string, ObsValues> = {};
  for (const name of names) {
    if (name === indexName || !g.keys().includes(name)) continue;
    let cached: ObsValues | undefined;
    Object.defineProperty(columns, name, {
      enumerable: true,
      configurable: true,
      get: () => {
        if (cached) return cached;
        if (!isOpen()) throw new Error(`${file}: ${key} column "${name}" was first read after close(); read it before closing the source`);
        return (cached = readColumn(file, g, name));
      },
    });
  }
  const table = { columns } as ObsTable;
  Object.defineProperty(table, "index", { enumerable: true, get: readIndex });
  return table;
}

/** Rows of one dataframe column from its HDF5 metadata (no values read), or undefined if unknown. */
function columnRows(o: H5Obj): number | undefined {
  if (o instanceof h5wasm.Dataset) return o.shape?.[0] ?? undefined;
  if (o instanceof h5wasm.Group) {
    const enc = attr(o, "encoding-type");
    const part = o.get(enc === "categorical" ? "codes" : "values");
    return part instanceof h5wasm.Dataset ? (part.shape?.[0] ?? undefined) : undefined;
  }
  return undefined;
}

/**
 * Check that an obs/var dataframe (index and every column) has one row per cell/gene of the matrix,
 * from metadata only. A missing dataframe passes (its index is made up).
 * @param what how the matrix axis is counted, e.g. `X's shape attribute says 2000 genes`.
 * @throws Error naming the file, the dataframe or column, and both lengths.
 */
function checkDataframeRows(file: string, h5: H5File, key: string, n: number, what: string): void {
  const g = h5.get(key);
  if (!(g instanceof h5wasm.Group)) return;
  const indexName = String(attr(g, "_index") ?? "_index");
  for (const name of g.keys()) {
    if (name === "__categories") continue;
    const rows = columnRows(g.get(name) as H5Obj);
    if (rows === undefined || rows === n) continue;
    const which = name === indexName ? `${key} has ${rows} rows (index "${name}")` : `${key} column "${name}" has ${rows} values`;
    throw new Error(`${file}: ${which} but ${what}; the file is inconsistent (corrupt or written by a broken tool)`);
  }
}

/** Known HDF5 filter plugins that files from h5py/anndata may use but h5wasm's HDF5 does not include. */
const PLUGIN_FILTERS: Record<number, string> = { 32000: "lzf", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle", 32015: "zstd", 307: "bzip2" };

/**
 * Refuse, before any value is read, a dataset cellfm's HDF5 (h5wasm) cannot decode: a compression
 * filter that is not built in (HDF5's own filters are ids < 256: deflate/gzip, shuffle, fletcher32,
 * szip, nbit, scaleoffset) or float16 values.
 * @throws Error naming the file, the element and how to rewrite the file.
 */
function checkDecodable(file: string, key: string, ds: H5Dataset, numeric = true): void {
  for (const f of ds.filters ?? []) {
    if (f.id < 256) continue;
    const name = f.name || PLUGIN_FILTERS[f.id] || `filter ${f.id}`;
    throw new Error(
      `${file}: ${key} is compressed with the "${name}" filter (HDF5 filter ${f.id}), which cellfm's HDF5 reader does not support; ` +
        `rewrite the file with gzip compression, e.g. in Python: adata = anndata.read_h5ad(path); adata.write_h5ad(path, compression="gzip")`,
    );
  }
  const m = ds.metadata;
  if (!numeric) return;
  if (m.type === 1 && m.size === 2) {
    throw new Error(
      `${file}: ${key} holds float16 values, which cellfm's HDF5 reader does not support; ` +
        `rewrite the counts as float32 or integers, e.g. in Python: adata.X = adata.X.astype("float32"); adata.write_h5ad(path)`,
    );
  }
  if (m.type !== 0 && m.type !== 1) throw new Error(`${file}: ${key} does not hold numbers (HDF5 type class ${m.type})`);
}

/** Check one block of counts: nonnegative, finite, integer (unless allowed). Throws naming file and cell. */
export function validateCounts(
  file: string,
  chunk: CsrChunk,
  cellName: (i: number) => string,
  allowNonInteger: boolean,
  /** where this file keeps other matrices, e.g. `layers: counts; raw/X`, named in the message. */
  elsewhere?: string,
): void {
  const { data, indptr } = chunk;
  for (let k = 0; k < data.length; k++) {
    const x = data[k];
    if (x >= 0 && x < Infinity && (allowNonInteger || Math.floor(x) === x)) continue;
    // locate the cell
    let r = 0;
    while (indptr[r + 1] <= k) r++;
    const cell = `cell ${chunk.start + r} ("${cellName(chunk.start + r)}")`;
    if (Number.isNaN(x)) throw new Error(`${file}: ${cell} has a NaN count; expected raw counts`);
    if (x < 0) throw new Error(`${file}: ${cell} has a negative count (${x}); expected raw counts`);
    if (!Number.isFinite(x)) throw new Error(`${file}: ${cell} has an infinite count; expected raw counts`);
    throw new Error(
      `${file}: ${cell} has a non-integer count (${x}); this looks like normalised or log-transformed data, ` +
        `but cellfm reads raw counts. Pick the raw counts with --layer <name> (e.g. --layer counts) or --use-raw` +
        (elsewhere ? ` (this file has ${elsewhere})` : "") +
        `, or pass --allow-non-integer if these really are (e.g. ambient-corrected) counts`,
    );
  }
}

/** An opened `.h5ad` matrix, with where it came from. */
export interface H5adSource extends CountMatrixSource {
  /** HDF5 key of the matrix read ("X", "layers/counts", "raw/X"). */
  matrixKey: string;
  /** "csr", "csc" or "dense". */
  matrixEncoding: string;
  /** HDF5 dtype of the stored values (e.g. "<f" float32, "<q" int64). */
  matrixDtype: string;
  /** number of stored values (nonzeros) for sparse matrices; nCells × nGenes for dense. */
  storedValues: number;
}

let ready: Promise<unknown> | undefined;
/** Wait for the h5wasm WebAssembly module (once per process). */
export async function h5Ready(): Promise<void> {
  ready ??= h5wasm.ready.then((m) => {
    // HDF5 errors become exceptions instead of traces printed on stderr
    (m as unknown as { activate_throwing_error_handler(): number }).activate_throwing_error_handler();
    return m;
  });
  await ready;
}

/**
 * Open an `.h5ad` file as a {@link CountMatrixSource} (cells × genes).
 * @throws Error naming the file when it is missing, not HDF5, or lacks the requested matrix/layer.
 */
export async function openH5ad(file: string, opts: OpenCountsOptions = {}): Promise<H5adSource> {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new Error(`${file}: is a folder, not an .h5ad file`);
  if (!isHdf5File(file)) throw new Error(`${file}: not an HDF5/AnnData (.h5ad) file (no HDF5 signature)`);
  const size = fs.statSync(file).size;
  const eof = hdf5EndOfFile(file);
  if (eof !== undefined && eof > size) {
    throw new Error(`${file}: truncated HDF5 file: ${size} bytes on disk but the file records ${eof} (an interrupted download or copy?)`);
  }
  await h5Ready();
  let h5: H5File;
  try {
    h5 = new h5wasm.File(file, "r");
  } catch (e) {
    throw new Error(`${file}: corrupt HDF5 file, cannot be opened (${hdf5Reason(e)}; --verbose shows HDF5's trace)`);
  }
  try {
    if (opts.layer && opts.useRaw) throw new Error("choose either --layer or --use-raw, not both");
    const key = opts.layer ? `layers/${opts.layer}` : opts.useRaw ? "raw/X" : "X";
    const X = h5.get(key) as H5Obj;
    if (!X) {
      const layers = h5.get("layers");
      const avail = layers instanceof h5wasm.Group ? layers.keys() : [];
      const hint = opts.layer ? ` (layers in the file: ${avail.length ? avail.join(", ") : "none"})` : "";
      if (key === "X" && h5.get("raw/X")) {
        throw new Error(
          `${file}: no "X" matrix, but "raw/X" holds one: pass --use-raw to read it` + (avail.length ? ` (or --layer <name>; layers: ${avail.join(", ")})` : ""),
        );
      }
      if (key === "X" && avail.length) throw new Error(`${file}: no "X" matrix; pick one of its layers with --layer <name> (layers: ${avail.join(", ")})`);
      throw new Error(`${file}: no "${key}" matrix${hint}; is this an AnnData file?`);
    }
    let encoding: string;
    let shape: [number, number];
    let dtype: string;
    /** sparse matrices: the validated pointer array (cells + 1 for CSR, genes + 1 for CSC). */
    let indptrAll: Float64Array | undefined;
    if (X instanceof h5wasm.Group) {
      const enc = attr(X, "encoding-type") ?? attr(X, "h5sparse_format");
      encoding = enc === "csr_matrix" || enc === "csr" ? "csr" : enc === "csc_matrix" || enc === "csc" ? "csc" : String(enc);
      if (encoding !== "csr" && encoding !== "csc") throw new Error(`${file}: "${key}" has unsupported encoding "${encoding}"`);
      const s = attr(X, "shape") ?? attr(X, "h5sparse_shape");
      const sa = s === undefined ? new Float64Array(0) : toFloat64(s);
      if (sa.length !== 2 || !sa.every((x) => Number.isInteger(x) && x >= 0)) {
        throw new Error(`${file}: ${key} has no valid shape attribute (got ${JSON.stringify(s === undefined ? null : Array.from(sa))}; expected [cells, genes])`);
      }
      shape = [sa[0], sa[1]];
      const parts: Record<string, H5Dataset> = {};
      for (const name of ["data", "indices", "indptr"]) {
        const d = X.get(name);
        if (!(d instanceof h5wasm.Dataset)) throw new Error(`${file}: ${key}/${name} is missing (corrupt sparse matrix)`);
        checkDecodable(file, `${key}/${name}`, d);
        parts[name] = d;
      }
      dtype = parts.data.dtype as string;
      const nnz = parts.data.shape?.[0] ?? 0;
      if ((parts.indices.shape?.[0] ?? 0) !== nnz) {
        throw new Error(`${file}: ${key}/indices has ${parts.indices.shape?.[0]} values but ${key}/data has ${nnz} (corrupt sparse matrix)`);
      }
      indptrAll = toFloat64(parts.indptr.value);
      const rows = encoding === "csr" ? shape[0] : shape[1];
      checkIndptr(`${file}: ${key}/indptr`, indptrAll, rows, nnz, encoding === "csr" ? "cells" : "genes");
    } else if (X instanceof h5wasm.Dataset) {
      encoding = "dense";
      const s = X.shape ?? [];
      if (s.length !== 2) throw new Error(`${file}: "${key}" is not a 2-D matrix (shape ${JSON.stringify(s)})`);
      checkDecodable(file, key, X);
      shape = [s[0], s[1]];
      dtype = X.dtype as string;
    } else throw new Error(`${file}: "${key}" is not a matrix`);
    const [nCells, nGenes] = shape;
    const axisWhat = (n: number, unit: string) => `${key}${encoding === "dense" ? "" : "'s shape attribute"} says ${n} ${unit}`;
    checkDataframeRows(file, h5, "obs", nCells, axisWhat(nCells, "cells"));
    checkDataframeRows(file, h5, opts.useRaw ? "raw/var" : "var", nGenes, axisWhat(nGenes, "genes"));
    let open = true;
    const isOpen = () => open;
    const obs = readDataframe(file, h5, "obs", nCells, isOpen);
    const v = readDataframe(file, h5, opts.useRaw ? "raw/var" : "var", nGenes, isOpen);
    void obs.index; // read now: cell ids are always needed, and a row-count mismatch should fail early
    const varTable = { columns: {} } as VarTable;
    Object.defineProperty(varTable, "index", { enumerable: true, get: () => v.index });
    for (const k of Object.keys(v.columns)) {
      let cached: string[] | Float64Array | undefined;
      Object.defineProperty(varTable.columns, k, {
        enumerable: true,
        configurable: true,
        get: () => {
          if (cached) return cached;
          const col = v.columns[k];
          cached = Array.isArray(col) && typeof col[0] === "boolean" ? Float64Array.from(col as boolean[], (b) => (b ? 1 : 0)) : (col as string[] | Float64Array);
          return cached;
        },
      });
    }
    const allowNonInteger = opts.allowNonInteger ?? false;
    const cellName = (i: number) => obs.index[i];
    const where = `${file} (${key})`;
    // the other count matrices the file holds, for the message on log-normalised values
    const layerNames = (() => {
      const g = h5.get("layers");
      return g instanceof h5wasm.Group ? g.keys().map((k) => `layers/${k}`) : [];
    })();
    const others = [...layerNames, ...(h5.get("raw/X") ? ["raw/X"] : [])].filter((k) => k !== key);
    const elsewhere = others.length ? others.join(", ") : undefined;

    let csrFromCsc: { indptr: Float64Array; indices: Int32Array; data: Float64Array } | undefined;
    const chunks = function* (chunkSize = 512, select?: ChunkSelection): Iterable<CsrChunk> {
      const blocks = selectedBlocks(nCells, chunkSize, select);
      if (encoding === "csr") {
        const g = X as H5Group;
        const ptr = indptrAll!;
        const dDs = g.get("data") as H5Dataset;
        const iDs = g.get("indices") as H5Dataset;
        for (const [a, b] of blocks) {
          const lo = ptr[a];
          const hi = ptr[b];
          const data = hi > lo ? toFloat64(dDs.slice([[lo, hi]])) : new Float64Array(0);
          const indices = hi > lo ? checkedIndices(`${file}: ${key}/indices`, iDs.slice([[lo, hi]]), lo, nGenes, "gene (column)") : new Int32Array(0);
          const indptr = new Float64Array(b - a + 1);
          for (let r = 0; r <= b - a; r++) indptr[r] = ptr[a + r] - lo;
          const { chunk } = canonicalRows({ start: a, nCells: b - a, indptr, indices, data });
          validateCounts(where, chunk, cellName, allowNonInteger, elsewhere);
          yield chunk;
        }
      } else if (encoding === "dense") {
        const ds = X as H5Dataset;
        for (const [a, b] of blocks) {
          const block = toFloat64(ds.slice([[a, b], [0, nGenes]]));
          let nnz = 0;
          for (let k = 0; k < block.length; k++) if (block[k] !== 0) nnz++;
          const indptr = new Float64Array(b - a + 1);
          const indices = new Int32Array(nnz);
          const data = new Float64Array(nnz);
          let o = 0;
          for (let r = 0; r < b - a; r++) {
            const base = r * nGenes;
            for (let c = 0; c < nGenes; c++) {
              const x = block[base + c];
              if (x !== 0) {
                indices[o] = c;
                data[o++] = x;
              }
            }
            indptr[r + 1] = o;
          }
          const chunk: CsrChunk = { start: a, nCells: b - a, indptr, indices, data };
          validateCounts(where, chunk, cellName, allowNonInteger, elsewhere);
          yield chunk;
        }
      } else {
        // CSC: read whole and transpose to CSR once.
        if (!csrFromCsc) {
          const g = X as H5Group;
          const cp = indptrAll!;
          const ri = checkedIndices(`${file}: ${key}/indices`, (g.get("indices") as H5Dataset).value, 0, nCells, "cell (row)");
          const dv = toFloat64((g.get("data") as H5Dataset).value);
          const counts = new Float64Array(nCells + 1);
          for (let k = 0; k < ri.length; k++) counts[ri[k] + 1]++;
          for (let r = 0; r < nCells; r++) counts[r + 1] += counts[r];
          const fill = counts.slice();
          const indices = new Int32Array(ri.length);
          const data = new Float64Array(ri.length);
          for (let c = 0; c < nGenes; c++) {
            for (let k = cp[c]; k < cp[c + 1]; k++) {
              const r = ri[k];
              const o = fill[r]++;
              indices[o] = c;
              data[o] = dv[k];
            }
          }
          csrFromCsc = { indptr: counts, indices, data };
        }
        const m = csrFromCsc;
        for (const [a, b] of blocks) {
          const lo = m.indptr[a];
          const hi = m.indptr[b];
          const indptr = new Float64Array(b - a + 1);
          for (let r = 0; r <= b - a; r++) indptr[r] = m.indptr[a + r] - lo;
          const { chunk } = canonicalRows({ start: a, nCells: b - a, indptr, indices: m.indices.subarray(lo, hi), data: m.data.subarray(lo, hi) });
          validateCounts(where, chunk, cellName, allowNonInteger, elsewhere);
          yield chunk;
        }
      }
    };
    return {
      path: file,
      nCells,
      nGenes,
      obs,
      var: varTable,
      chunks,
      close: () => {
        if (open) h5.close();
        open = false;
      },
      matrixKey: key,
      matrixEncoding: encoding,
      matrixDtype: dtype,
      storedValues: encoding === "dense" ? nCells * nGenes : indptrAll![indptrAll!.length - 1],
    };
  } catch (e) {
    h5.close();
    if (String((e as Error)?.message ?? e).includes("HDF5-DIAG")) throw new Error(`${file}: corrupt HDF5 file (${hdf5Reason(e)}; --verbose shows HDF5's trace)`);
    throw e;
  }
}

/** Columns of an obs/var dataframe to write: strings, numbers (float64) or categoricals. */
export type WriteColumns = Record<string, string[] | Float64Array | Int32Array | { categories: string[]; codes: Int8Array | Int16Array | Int32Array }>;

function writeDataframe(h5: H5File, key: string, index: string[], columns: WriteColumns): void {
  const g = h5.create_group(key);
  g.create_attribute("encoding-type", "dataframe");
  g.create_attribute("encoding-version", "0.2.0");
  g.create_attribute("_index", "_index");
  const names = Object.keys(columns);
  // h5py writes an empty column-order as an empty float array; h5wasm cannot write an empty string list
  if (names.length > 0) g.create_attribute("column-order", names);
  else g.create_attribute("column-order", new Float64Array(0));
  const idx = g.create_dataset({ name: "_index", data: index });
  idx.create_attribute("encoding-type", "string-array");
  idx.create_attribute("encoding-version", "0.2.0");
  for (const [name, col] of Object.entries(columns)) {
    if (Array.isArray(col)) {
      const d = g.create_dataset({ name, data: col });
      d.create_attribute("encoding-type", "string-array");
      d.create_attribute("encoding-version", "0.2.0");
    } else if (col instanceof Float64Array || col instanceof Int32Array) {
      const d = g.create_dataset({ name, data: col });
      d.create_attribute("encoding-type", "array");
      d.create_attribute("encoding-version", "0.2.0");
    } else {
      const cg = g.create_group(name);
      cg.create_attribute("encoding-type", "categorical");
      cg.create_attribute("encoding-version", "0.2.0");
      cg.create_attribute("ordered", 0);
      const cats = cg.create_dataset({ name: "categories", data: col.categories });
      cats.create_attribute("encoding-type", "string-array");
      cats.create_attribute("encoding-version", "0.2.0");
      const codes = cg.create_dataset({ name: "codes", data: col.codes });
      codes.create_attribute("encoding-type", "array");
      codes.create_attribute("encoding-version", "0.2.0");
    }
  }
}

/**
 * Write a minimal AnnData `.h5ad` with a CSR `X` (cells × genes), for tests, benchmarks and
 * examples. Blocks of rows are produced by `rows` so files larger than memory can be written.
 * @param spec.nnz total stored values (datasets are created at this size, then filled block by block).
 * @param spec.rows yields CSR blocks in cell order (`indptr` relative to the block).
 * @param spec.dtype stored value type: "<f" float32 (default), "<d" float64, "<i" int32.
 * Files with only string/numeric obs columns read in Python anndata 0.8 (checked); categorical columns
 * carry an integer `ordered` attribute (h5wasm cannot write HDF5 booleans), which cellfm reads but
 * anndata rejects — use plain string columns for files meant for Python.
 */
export async function writeCsrH5ad(
  file: string,
  spec: {
    nCells: number;
    nGenes: number;
    nnz: number;
    rows: Iterable<{ indptr: ArrayLike<number>; indices: Int32Array; data: ArrayLike<number> }>;
    obs: { index: string[]; columns?: WriteColumns };
    var: { index: string[]; columns?: WriteColumns };
    dtype?: "<f" | "<d" | "<i";
  },
): Promise<void> {
  await h5Ready();
  const h5 = new h5wasm.File(file, "w");
  try {
    const X = h5.create_group("X");
    X.create_attribute("encoding-type", "csr_matrix");
    X.create_attribute("encoding-version", "0.1.0");
    X.create_attribute("shape", new BigInt64Array([BigInt(spec.nCells), BigInt(spec.nGenes)]));
    const dtype = spec.dtype ?? "<f";
    const chunk = Math.max(1, Math.min(spec.nnz, 1 << 20));
    const mk = (name: string, dt: string, n: number) =>
      X.create_dataset({ name, data: dt === "<f" ? new Float32Array(0) : dt === "<d" ? new Float64Array(0) : new Int32Array(0), shape: [0], maxshape: [n], chunks: [Math.max(1, Math.min(n, chunk))], dtype: dt });
    const dData = mk("data", dtype, spec.nnz);
    const dInd = mk("indices", "<i", spec.nnz);
    dData.resize([spec.nnz]);
    dInd.resize([spec.nnz]);
    const indptr = new BigInt64Array(spec.nCells + 1);
    let cell = 0;
    let off = 0;
    for (const b of spec.rows) {
      const nb = b.indptr.length - 1;
      const n = b.indices.length;
      for (let r = 0; r < nb; r++) indptr[cell + r + 1] = BigInt(off + b.indptr[r + 1]);
      if (n > 0) {
        const vals = dtype === "<f" ? Float32Array.from(b.data) : dtype === "<d" ? Float64Array.from(b.data) : Int32Array.from(b.data);
        dData.write_slice([[off, off + n]], vals);
        dInd.write_slice([[off, off + n]], b.indices);
      }
      off += n;
      cell += nb;
    }
    if (cell !== spec.nCells || off !== spec.nnz) throw new Error(`writeCsrH5ad: got ${cell} cells / ${off} values, expected ${spec.nCells} / ${spec.nnz}`);
    X.create_dataset({ name: "indptr", data: indptr });
    writeDataframe(h5, "obs", spec.obs.index, spec.obs.columns ?? {});
    writeDataframe(h5, "var", spec.var.index, spec.var.columns ?? {});
    h5.create_group("layers");
    h5.create_group("obsm");
    h5.create_group("uns");
  } finally {
    h5.close();
  }
}
