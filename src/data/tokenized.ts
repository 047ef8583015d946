/**
 * The tokenized dataset on disk: a folder of Arrow IPC (file format, "Feather v2") shards plus a
 * small JSON manifest. Every stage after `tokenize` (train, embed) reads it; pyarrow, polars and R
 * arrow read the shards directly (`pyarrow.ipc.open_file("shard-00000.arrow").read_all()`).
 *
 * Layout (see `docs/design.md`, "Formats"):
 * ```
 * tokens/
 *   manifest.json       encoding, model version, dictionary name + sha256, source file + sha256, n_cells, columns, shards
 *   shard-00000.arrow   columns: cell_id utf8, input_ids list<int32>, length int32, [values list<float32>], carried obs columns
 *   shard-00001.arrow   ...
 * ```
 * Cells are stored in input order across shards. Folders are written atomically (temporary sibling
 * folder, then rename through {@link commitDir}), so a failed run never leaves a partial dataset.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  Bool,
  Field,
  Float32,
  Int32,
  List,
  Table,
  Utf8,
  makeData,
  makeVector,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
  type Vector,
} from "apache-arrow";
import { assertWritable, commitDir, packagePath, tempDirFor } from "../io.js";
import type { ObsTable, ObsValues } from "./types.js";

/** Arrow column types used in a tokenized dataset. */
export type TokenizedColumnType = "utf8" | "int32" | "float64" | "bool" | "list<int32>" | "list<float32>";

/** `manifest.json` of a tokenized dataset (snake_case keys, stable across versions). */
export interface TokenizedManifest {
  /** always "cellfm-tokenized". */
  format: "cellfm-tokenized";
  /** manifest layout version (1). */
  format_version: number;
  /** token encoding, e.g. "geneformer-rank-value". */
  encoding: string;
  /** Geneformer dictionary generation ("V1" = gc30M, "V2" = gc104M), when the encoding uses one. */
  model_version?: string;
  /** token dictionary file name and its sha256 (hex). */
  dictionary?: { name: string; sha256: string };
  /** medians used (bundled dictionary name or a user TSV) and its sha256. */
  medians?: { name: string; sha256: string };
  /** input file or folder and its sha256 (of the file; of matrix.mtx for a 10x folder). */
  source?: { path: string; sha256: string };
  /** number of cells over all shards. */
  n_cells: number;
  /** shard files in cell order, with their cell counts. */
  shards: { file: string; n_cells: number }[];
  /** column names and Arrow types, in schema order. */
  columns: { name: string; type: TokenizedColumnType }[];
  /** names of the carried obs columns (a subset of `columns`). */
  obs_columns: string[];
  /** cellfm package version that wrote the dataset. */
  cellfm_version: string;
  /** ISO-8601 creation time. */
  created: string;
  /** free-form extra metadata (e.g. the tokenizer summary). */
  extra?: Record<string, unknown>;
}

/** A tokenized dataset fully loaded in memory. */
export interface TokenizedDataset {
  manifest: TokenizedManifest;
  /** obs names, one per cell. */
  cellIds: string[];
  /** token ids per cell, `[length_i]` int32, no padding (special tokens included when the encoding has them). */
  inputIds: Int32Array[];
  /** number of tokens per cell, `[nCells]`. */
  lengths: Int32Array;
  /** per-token values (count encodings), `[length_i]` float32, when present. */
  values?: Float32Array[];
  /** carried obs columns; `index` equals `cellIds`. */
  obs: ObsTable;
}

/** A block of tokenized cells to append to a dataset. */
export interface TokenizedBatch {
  cellIds: string[];
  /** token ids per cell (`[length_i]`, int32). */
  inputIds: Int32Array[];
  /** optional per-token values (`[length_i]`, float32). */
  values?: Float32Array[];
  /** carried obs columns for exactly these cells. */
  obs?: Record<string, ObsValues>;
}

/** Metadata given when writing; shard list, columns, counts and dates are filled in by the writer. */
export type TokenizedMeta = Omit<
  TokenizedManifest,
  "format" | "format_version" | "n_cells" | "shards" | "columns" | "obs_columns" | "cellfm_version" | "created"
>;

/** Options for {@link TokenizedDatasetWriter}. */
export interface TokenizedWriteOptions {
  /** replace an existing output folder (only once the new one is complete). */
  force?: boolean;
  /** start a new shard after this many cells (default 50,000). */
  shardCells?: number;
  /** ... or after this many tokens (default 32M, about 128 MB of int32). */
  shardTokens?: number;
}

let cachedVersion: string | undefined;
/** The cellfm version from package.json ("unknown" when it cannot be read). */
export function cellfmVersion(): string {
  if (cachedVersion === undefined) {
    try {
      cachedVersion = String(JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")).version);
    } catch {
      cachedVersion = "unknown";
    }
  }
  return cachedVersion;
}

function obsType(v: ObsValues): TokenizedColumnType {
  if (v instanceof Float64Array) return "float64";
  if (v.length > 0 && typeof v[0] === "boolean") return "bool";
  return "utf8";
}

function listVector(arrays: ArrayLike<number>[], kind: "int32" | "float32"): Vector {
  const n = arrays.length;
  const offsets = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) offsets[i + 1] = offsets[i] + arrays[i].length;
  const total = offsets[n];
  if (kind === "int32") {
    const flat = new Int32Array(total);
    for (let i = 0; i < n; i++) flat.set(arrays[i], offsets[i]);
    const child = makeData({ type: new Int32(), length: total, nullCount: 0, data: flat });
    const type = new List(new Field("item", new Int32(), true));
    return makeVector(makeData({ type, length: n, nullCount: 0, valueOffsets: offsets, child }));
  }
  const flat = new Float32Array(total);
  for (let i = 0; i < n; i++) flat.set(arrays[i], offsets[i]);
  const child = makeData({ type: new Float32(), length: total, nullCount: 0, data: flat });
  const type = new List(new Field("item", new Float32(), true));
  return makeVector(makeData({ type, length: n, nullCount: 0, valueOffsets: offsets, child }));
}

/**
 * Streaming writer of a tokenized dataset: {@link append} blocks of cells (memory holds at most one
 * shard), then {@link finish} writes the manifest and moves the folder into place.
 * @throws Error if the output exists and `force` is not set (checked in the constructor, before any work).
 */
export class TokenizedDatasetWriter {
  private readonly tmp: string;
  private pending: TokenizedBatch[] = [];
  private pendingCells = 0;
  private pendingTokens = 0;
  private readonly shards: { file: string; n_cells: number }[] = [];
  private columns: { name: string; type: TokenizedColumnType }[] | undefined;
  private obsColumns: string[] | undefined;
  private nCells = 0;
  private done = false;

  constructor(
    private readonly dir: string,
    private readonly meta: TokenizedMeta,
    private readonly opts: TokenizedWriteOptions = {},
  ) {
    assertWritable(dir, opts.force ?? false);
    this.tmp = tempDirFor(dir);
  }

  /** Append cells (in order). Column sets must be the same in every batch. */
  append(batch: TokenizedBatch): void {
    if (this.done) throw new Error("TokenizedDatasetWriter: append after finish");
    const n = batch.cellIds.length;
    if (batch.inputIds.length !== n) throw new Error("TokenizedDatasetWriter: cellIds and inputIds differ in length");
    const obsNames = Object.keys(batch.obs ?? {});
    if (this.obsColumns === undefined) this.obsColumns = obsNames;
    else if (obsNames.join("\u0000") !== this.obsColumns.join("\u0000")) {
      throw new Error("TokenizedDatasetWriter: obs columns changed between batches");
    }
    if (n === 0) return;
    this.pending.push(batch);
    this.pendingCells += n;
    for (const ids of batch.inputIds) this.pendingTokens += ids.length;
    if (this.pendingCells >= (this.opts.shardCells ?? 50_000) || this.pendingTokens >= (this.opts.shardTokens ?? 32_000_000)) {
      this.flush();
    }
  }

  private flush(): void {
    if (this.pendingCells === 0) return;
    const cellIds: string[] = [];
    const inputIds: Int32Array[] = [];
    const values: Float32Array[] = [];
    const hasValues = this.pending[0].values !== undefined;
    const obs: Record<string, ObsValues[]> = {};
    for (const name of this.obsColumns ?? []) obs[name] = [];
    for (const b of this.pending) {
      for (const c of b.cellIds) cellIds.push(c);
      for (const a of b.inputIds) inputIds.push(a);
      if (hasValues !== (b.values !== undefined)) throw new Error("TokenizedDatasetWriter: values present in some batches only");
      if (b.values) for (const v of b.values) values.push(v);
      for (const name of this.obsColumns ?? []) obs[name].push(b.obs![name]);
    }
    const lengths = new Int32Array(inputIds.length);
    for (let i = 0; i < inputIds.length; i++) lengths[i] = inputIds[i].length;
    const cols: Record<string, Vector> = {
      cell_id: vectorFromArray(cellIds, new Utf8()),
      input_ids: listVector(inputIds, "int32"),
      length: makeVector(lengths),
    };
    const types: { name: string; type: TokenizedColumnType }[] = [
      { name: "cell_id", type: "utf8" },
      { name: "input_ids", type: "list<int32>" },
      { name: "length", type: "int32" },
    ];
    if (hasValues) {
      cols.values = listVector(values, "float32");
      types.push({ name: "values", type: "list<float32>" });
    }
    for (const name of this.obsColumns ?? []) {
      if (name in cols) throw new Error(`obs column "${name}" clashes with a dataset column name`);
      const parts = obs[name];
      const t = obsType(parts.find((p) => p.length > 0) ?? parts[0]);
      if (t === "float64") {
        const all = new Float64Array(this.pendingCells);
        let o = 0;
        for (const p of parts) {
          all.set(p as Float64Array, o);
          o += p.length;
        }
        cols[name] = makeVector(all);
      } else if (t === "bool") {
        cols[name] = vectorFromArray(parts.flatMap((p) => p as boolean[]), new Bool());
      } else {
        cols[name] = vectorFromArray(parts.flatMap((p) => Array.from(p as string[], String)), new Utf8());
      }
      types.push({ name, type: t });
    }
    if (this.columns === undefined) this.columns = types;
    const table = new Table(cols);
    const file = `shard-${String(this.shards.length).padStart(5, "0")}.arrow`;
    fs.writeFileSync(path.join(this.tmp, file), tableToIPC(table, "file"));
    this.shards.push({ file, n_cells: this.pendingCells });
    this.nCells += this.pendingCells;
    this.pending = [];
    this.pendingCells = 0;
    this.pendingTokens = 0;
  }

  /** Write the last shard and `manifest.json`, then move the folder to its final name. Returns the manifest. */
  finish(extraFiles: Record<string, string> = {}): TokenizedManifest {
    if (this.done) throw new Error("TokenizedDatasetWriter: finish called twice");
    try {
      this.flush();
      const manifest: TokenizedManifest = {
        format: "cellfm-tokenized",
        format_version: 1,
        ...this.meta,
        n_cells: this.nCells,
        shards: this.shards,
        columns: this.columns ?? [
          { name: "cell_id", type: "utf8" },
          { name: "input_ids", type: "list<int32>" },
          { name: "length", type: "int32" },
        ],
        obs_columns: this.obsColumns ?? [],
        cellfm_version: cellfmVersion(),
        created: new Date().toISOString(),
      };
      fs.writeFileSync(path.join(this.tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
      for (const [name, text] of Object.entries(extraFiles)) fs.writeFileSync(path.join(this.tmp, name), text);
      commitDir(this.tmp, this.dir, this.opts.force ?? false);
      this.done = true;
      return manifest;
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Remove the temporary folder (nothing is written under the final name). */
  abort(): void {
    this.done = true;
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

/**
 * Write a whole in-memory tokenized dataset to `dir` (atomic; see {@link TokenizedDatasetWriter}).
 * @throws Error if `dir` exists and `force` is not set; nothing is written then.
 */
export function writeTokenizedDataset(
  dir: string,
  data: TokenizedBatch & { meta: TokenizedMeta },
  opts: TokenizedWriteOptions = {},
): TokenizedManifest {
  const w = new TokenizedDatasetWriter(dir, data.meta, opts);
  try {
    w.append(data);
  } catch (e) {
    w.abort();
    throw e;
  }
  return w.finish();
}

/** Read and check `manifest.json` of a tokenized dataset folder. */
export function readTokenizedManifest(dir: string): TokenizedManifest {
  const file = path.join(dir, "manifest.json");
  if (!fs.existsSync(dir)) throw new Error(`tokenized dataset ${dir} does not exist`);
  if (!fs.existsSync(file)) throw new Error(`${dir} is not a tokenized dataset: manifest.json is missing`);
  let m: TokenizedManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8")) as TokenizedManifest;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (m.format !== "cellfm-tokenized" || !Array.isArray(m.shards)) {
    throw new Error(`${file}: not a cellfm tokenized-dataset manifest`);
  }
  return m;
}

/**
 * Load a tokenized dataset folder into memory. `inputIds[i]` (and `values[i]`) are views into the
 * shard buffers (no copy per cell).
 * @throws Error naming the folder/shard when the manifest is missing or a shard disagrees with it.
 */
export function readTokenizedDataset(dir: string): TokenizedDataset {
  const manifest = readTokenizedManifest(dir);
  const cellIds: string[] = [];
  const inputIds: Int32Array[] = [];
  const values: Float32Array[] = [];
  const lengthsAll: number[] = [];
  const obsParts: Record<string, ObsValues[]> = {};
  for (const name of manifest.obs_columns) obsParts[name] = [];
  let hasValues = false;
  for (const shard of manifest.shards) {
    const file = path.join(dir, shard.file);
    if (!fs.existsSync(file)) throw new Error(`${dir}: shard ${shard.file} listed in manifest.json is missing`);
    const table = tableFromIPC(fs.readFileSync(file));
    if (table.numRows !== shard.n_cells) {
      throw new Error(`${file}: ${table.numRows} cells, manifest says ${shard.n_cells}`);
    }
    const idCol = table.getChild("cell_id");
    const ids = table.getChild("input_ids");
    if (!idCol || !ids) throw new Error(`${file}: missing cell_id or input_ids column`);
    for (const v of idCol) cellIds.push(String(v));
    for (const d of ids.data) {
      const offs = d.valueOffsets as Int32Array;
      const child = d.children[0];
      const flat = (child.values as Int32Array).subarray(child.offset);
      for (let i = 0; i < d.length; i++) {
        const a = offs[d.offset + i];
        const b = offs[d.offset + i + 1];
        inputIds.push(flat.subarray(a, b));
        lengthsAll.push(b - a);
      }
    }
    const vcol = table.getChild("values");
    if (vcol) {
      hasValues = true;
      for (const d of vcol.data) {
        const offs = d.valueOffsets as Int32Array;
        const child = d.children[0];
        const flat = (child.values as Float32Array).subarray(child.offset);
        for (let i = 0; i < d.length; i++) values.push(flat.subarray(offs[d.offset + i], offs[d.offset + i + 1]));
      }
    }
    for (const name of manifest.obs_columns) {
      const col = table.getChild(name);
      if (!col) throw new Error(`${file}: carried obs column "${name}" is missing`);
      const t = manifest.columns.find((c) => c.name === name)?.type ?? "utf8";
      if (t === "float64") obsParts[name].push(Float64Array.from(col.toArray() as Float64Array));
      else if (t === "bool") obsParts[name].push(Array.from(col, (v) => Boolean(v)));
      else obsParts[name].push(Array.from(col, (v) => (v === null ? "" : String(v))));
    }
  }
  const obs: ObsTable = { index: cellIds, columns: {} };
  for (const name of manifest.obs_columns) {
    const parts = obsParts[name];
    const t = manifest.columns.find((c) => c.name === name)?.type ?? "utf8";
    if (t === "float64") {
      const all = new Float64Array(cellIds.length);
      let o = 0;
      for (const p of parts) {
        all.set(p as Float64Array, o);
        o += p.length;
      }
      obs.columns[name] = all;
    } else if (t === "bool") obs.columns[name] = parts.flatMap((p) => p as boolean[]);
    else obs.columns[name] = parts.flatMap((p) => p as string[]);
  }
  return {
    manifest,
    cellIds,
    inputIds,
    lengths: Int32Array.from(lengthsAll),
    values: hasValues ? values : undefined,
    obs,
  };
}
