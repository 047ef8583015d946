/**
 * The tokenized dataset on disk: a folder of Arrow IPC (file format, "Feather v2") shards plus a
 * small JSON manifest. Every stage after `tokenize` (train, embed) reads it; pyarrow, polars and R
 * arrow read the shards directly (`pyarrow.ipc.open_file("shard-00000.arrow").read_all()`).
 *
 * Layout (see `docs/design.md`, "Formats"):
 * ```
 * tokens/
 *   manifest.json       encoding, model version, dictionary name + sha256, source file + sha256, n_cells, columns, shards
 *   shard-00000.arrow   columns: cell_id utf8, input_ids list<int32>, length int32, [values list<float32>],
 *                       [n_counts float64], [counts list<float32> (binned: raw count per token)], carried obs columns
 *   shard-00001.arrow   ...
 * ```
 * Cells are stored in input order across shards. Folders are written atomically (temporary sibling
 * folder, then rename through {@link commitDir}), so a failed run never leaves a partial dataset.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  arrow,
  AsyncByteQueue,
  Bool,
  Field,
  Float32,
  Int32,
  List,
  Table,
  Utf8,
  makeData,
  makeVector,
  RecordBatchFileWriter,
  tableFromIPC,
  vectorFromArray,
} from "./arrow.js";
import type * as A from "apache-arrow";
import type { Vector } from "apache-arrow";
import type { ArrayBufferViewInput } from "apache-arrow/util/buffer";
import { assertWritable, commitDir, containedPath, packagePath, syncClose, tempDirFor, writeAll, writeFileAtomic } from "../io.js";
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
  /**
   * vocabulary size and special-token ids (`<pad>`, `<mask>`, V2 `<cls>`/`<eos>`); when absent, they
   * come from the Geneformer dictionary of `model_version` (`vocabularyOf` in src/tokenize/dictionaries.ts).
   */
  vocabulary?: { size: number; pad: number; mask: number; cls?: number; eos?: number };
  /** medians used (bundled dictionary name or a user TSV) and its sha256. */
  medians?: { name: string; sha256: string };
  /** input file or folder and its sha256 (of the file; of matrix.mtx for a 10x folder). */
  source?: { path: string; sha256: string };
  /** `cellfm tokenize --shard k/N`: this dataset holds slice k of N of the source's cells (`cellfm merge` joins them). */
  shard?: { index: number; count: number };
  /** number of cells over all shards. */
  n_cells: number;
  /** shard files in cell order, with their cell counts. */
  shards: TokenizedShard[];
  /** column names and Arrow types, in schema order. */
  columns: { name: string; type: TokenizedColumnType }[];
  /** names of the carried obs columns (a subset of `columns`). */
  obs_columns: string[];
  /** cellfm package version that wrote the dataset. */
  cellfm_version: string;
  /** ISO-8601 creation time. */
  created: string;
  /** what the `values` column holds: "count" (raw count per token) or "bin" (scGPT bin index). */
  values_kind?: "count" | "bin";
  /** `binned`: total number of bins including bin 0 (scGPT: 51). */
  n_bins?: number;
  /** `binned`: seed of the per-cell tie-spreading generator (combined with the cell id). */
  binning_seed?: number;
  /**
   * `binned` / `counts` tokenized with `--top-genes K`: each cell keeps only its K genes ranked first by
   * Geneformer's rank-value (count / n_counts × 10,000 / nonzero median), the genes a rank model with
   * `max_length: K` reads. Absent: every expressed gene.
   */
  top_genes?: number;
  /**
   * token ids (ascending) of the vocabulary genes the input measured (its var genes that map to a token),
   * e.g. the pool of unexpressed genes that `pad_with_unexpressed` draws from.
   */
  measured_tokens?: number[];
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
  /** per-token values, `[length_i]` float32 (raw count or bin index, see `manifest.values_kind`), when present. */
  values?: Float32Array[];
  /** library size (total count over all genes) of each cell, `[nCells]` float64, when present. */
  nCounts?: Float64Array;
  /** raw count per token, `[length_i]` float32, when stored (binned datasets, whose `values` are bins). */
  counts?: Float32Array[];
  /** carried obs columns; `index` equals `cellIds`. */
  obs: ObsTable;
}

/** A block of tokenized cells to append to a dataset. */
export interface TokenizedBatch {
  cellIds: string[];
  /** token ids per cell (`[length_i]`, int32). Give either this or `flat`. */
  inputIds?: Int32Array[];
  /** the same, concatenated: cell i is `values[offsets[i] .. offsets[i+1])` (no per-cell arrays, no copy). */
  flat?: { offsets: Int32Array; values: Int32Array };
  /** optional per-token values (`[length_i]`, float32). Give either this or `flatValues`. */
  values?: Float32Array[];
  /** the same, concatenated and aligned with `flat` (same offsets). */
  flatValues?: Float32Array;
  /** optional raw counts aligned with `flat` (same offsets), stored as the list<float32> column `counts`. */
  flatCounts?: Float32Array;
  /** optional library size per cell (`[n]`), stored as the float64 column `n_counts`. */
  nCounts?: Float64Array;
  /**
   * carried obs columns for exactly these cells. An obs column named `n_counts` next to `nCounts` must
   * hold the same numbers; it is stored once and listed as carried.
   */
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
  /** start a new shard after this many cells (default 100,000). */
  shardCells?: number;
  /** ... or after this many tokens (default 64M, about 256 MB of int32). */
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

function flatten<T extends Int32Array | Float32Array>(arrays: ArrayLike<number>[], make: (n: number) => T): { offsets: Int32Array; values: T } {
  const n = arrays.length;
  const offsets = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) offsets[i + 1] = offsets[i] + arrays[i].length;
  const values = make(offsets[n]);
  for (let i = 0; i < n; i++) values.set(arrays[i], offsets[i]);
  return { offsets, values };
}

function listVector(offsets: Int32Array, values: Int32Array | Float32Array): Vector {
  const n = offsets.length - 1;
  // rebase offsets to start at 0 (a flat buffer may be shared with other batches)
  const base = offsets[0];
  const offs = base === 0 ? offsets : offsets.map((o) => o - base);
  const vals = values.subarray(base, offsets[n]);
  const itemType = vals instanceof Int32Array ? new Int32() : new Float32();
  const child = makeData({ type: itemType, length: vals.length, nullCount: 0, data: vals } as never);
  const type = new List(new Field("item", itemType, true));
  return makeVector(makeData({ type, length: n, nullCount: 0, valueOffsets: offs, child } as never));
}

/**
 * A utf8 vector of `strings` (no nulls), built straight from one encoded buffer: the same Arrow data
 * as `vectorFromArray(strings, new Utf8())` (same offsets and bytes, so the same IPC file), without
 * apache-arrow's per-value builder, which took ~30 % of writing a small dataset.
 */
export function utf8Vector(strings: readonly string[]): Vector {
  const n = strings.length;
  const offsets = new Int32Array(n + 1);
  let chars = 0;
  for (let i = 0; i < n; i++) chars += strings[i].length;
  let buf = Buffer.allocUnsafe(chars * 3); // UTF-8 needs at most 3 bytes per UTF-16 code unit
  let pos = 0;
  for (let i = 0; i < n; i++) {
    pos += buf.write(strings[i], pos, "utf8");
    offsets[i + 1] = pos;
  }
  buf = buf.subarray(0, pos);
  const data = new Uint8Array(buf.buffer, buf.byteOffset, pos);
  return makeVector(makeData({ type: new Utf8(), length: n, nullCount: 0, valueOffsets: offsets, data } as never));
}

/** An apache-arrow byte sink that writes each IPC message straight to a file (no in-memory join). */
class FileSink extends AsyncByteQueue {
  /** Bytes written and their running SHA-256. */
  bytes = 0;
  readonly hash = crypto.createHash("sha256");
  constructor(
    private readonly fd: number,
    private readonly file: string,
  ) {
    super();
  }
  override write(value: ArrayBufferViewInput): void {
    const v = value as Uint8Array;
    if (v.byteLength > 0) {
      writeAll(this.fd, v, this.file);
      this.hash.update(v);
      this.bytes += v.byteLength;
    }
  }
}

/** One shard of a tokenized dataset in `manifest.json`. */
export interface TokenizedShard {
  /** file name inside the dataset folder. */
  file: string;
  n_cells: number;
  /** file size in bytes and SHA-256 of its content (absent in datasets written before they were recorded). */
  bytes?: number;
  sha256?: string;
}

/**
 * Read a shard's bytes, checked against its manifest entry.
 * @throws Error naming the shard when it is missing, shorter/longer than recorded (truncated), or its checksum differs
 */
export function readShardChecked(dir: string, shard: TokenizedShard): Buffer {
  const file = containedPath(dir, shard.file, `${path.join(dir, "manifest.json")}: shard`);
  if (!fs.existsSync(file)) throw new Error(`${dir}: shard ${shard.file} listed in manifest.json is missing`);
  const buf = fs.readFileSync(file);
  if (shard.bytes !== undefined && buf.length !== shard.bytes) {
    throw new Error(`${file}: ${buf.length < shard.bytes ? "truncated" : "altered"} token shard: ${buf.length} bytes on disk, manifest.json records ${shard.bytes}; re-run cellfm tokenize`);
  }
  if (shard.sha256 && crypto.createHash("sha256").update(buf).digest("hex") !== shard.sha256) {
    throw new Error(`${file}: corrupt token shard: its SHA-256 differs from the one manifest.json records; re-run cellfm tokenize`);
  }
  return buf;
}

/**
 * Streaming writer of a tokenized dataset: {@link append} blocks of cells — each becomes one Arrow
 * record batch written straight to the current shard file, so memory holds one block only — then
 * {@link finish} writes the manifest and moves the folder into place.
 * @throws Error if the output exists and `force` is not set (checked in the constructor, before any work).
 */
export class TokenizedDatasetWriter {
  private readonly tmp: string;
  private readonly shards: TokenizedShard[] = [];
  private columns: { name: string; type: TokenizedColumnType }[] | undefined;
  private obsColumns: string[] | undefined;
  private hasValues: boolean | undefined;
  private hasNCounts: boolean | undefined;
  private hasCounts: boolean | undefined;
  private nCells = 0;
  private done = false;
  private shard: { fd: number; writer: A.RecordBatchFileWriter; sink: FileSink; cells: number; tokens: number } | undefined;

  constructor(
    private readonly dir: string,
    private readonly meta: TokenizedMeta,
    private readonly opts: TokenizedWriteOptions = {},
  ) {
    assertWritable(dir, opts.force ?? false, { command: "tokenize", kind: "dir" });
    this.tmp = tempDirFor(dir, "tokenize");
  }

  /** Append cells (in order). Column sets and types must be the same in every batch. */
  append(batch: TokenizedBatch): void {
    if (this.done) throw new Error("TokenizedDatasetWriter: append after finish");
    const n = batch.cellIds.length;
    const flat = batch.flat ?? (batch.inputIds ? flatten(batch.inputIds, (k) => new Int32Array(k)) : undefined);
    if (!flat || flat.offsets.length !== n + 1) throw new Error("TokenizedDatasetWriter: cellIds and input ids differ in length");
    const obsNames = Object.keys(batch.obs ?? {});
    if (this.obsColumns === undefined) this.obsColumns = obsNames;
    else if (obsNames.join("\u0000") !== this.obsColumns.join("\u0000")) {
      throw new Error("TokenizedDatasetWriter: obs columns changed between batches");
    }
    const hasValues = batch.values !== undefined || batch.flatValues !== undefined;
    if (this.hasValues === undefined) this.hasValues = hasValues;
    else if (this.hasValues !== hasValues) throw new Error("TokenizedDatasetWriter: values present in some batches only");
    if (this.hasNCounts === undefined) this.hasNCounts = batch.nCounts !== undefined;
    else if (this.hasNCounts !== (batch.nCounts !== undefined)) throw new Error("TokenizedDatasetWriter: n_counts present in some batches only");
    if (this.hasCounts === undefined) this.hasCounts = batch.flatCounts !== undefined;
    else if (this.hasCounts !== (batch.flatCounts !== undefined)) throw new Error("TokenizedDatasetWriter: counts present in some batches only");
    if (batch.flatCounts && (!batch.flat || batch.flatCounts.length < flat.offsets[n])) throw new Error("TokenizedDatasetWriter: flatCounts needs flat input ids of the same length");
    if (batch.nCounts && batch.nCounts.length !== n) throw new Error(`TokenizedDatasetWriter: ${batch.nCounts.length} n_counts for ${n} cells`);
    if (batch.flatValues && batch.flatValues.length < flat.offsets[n]) throw new Error("TokenizedDatasetWriter: flatValues shorter than the input ids");
    if (n === 0) return;

    const lengths = new Int32Array(n);
    for (let i = 0; i < n; i++) lengths[i] = flat.offsets[i + 1] - flat.offsets[i];
    const cols: Record<string, Vector> = {
      cell_id: utf8Vector(batch.cellIds),
      input_ids: listVector(flat.offsets, flat.values),
      length: makeVector(lengths),
    };
    const types: { name: string; type: TokenizedColumnType }[] = [
      { name: "cell_id", type: "utf8" },
      { name: "input_ids", type: "list<int32>" },
      { name: "length", type: "int32" },
    ];
    if (batch.values || batch.flatValues) {
      const fv = batch.flatValues ? { offsets: flat.offsets, values: batch.flatValues } : flatten(batch.values!, (k) => new Float32Array(k));
      if (fv.offsets[n] - fv.offsets[0] !== flat.offsets[n] - flat.offsets[0]) throw new Error("TokenizedDatasetWriter: values and input ids differ in length");
      cols.values = listVector(fv.offsets, fv.values);
      types.push({ name: "values", type: "list<float32>" });
    }
    if (batch.flatCounts) {
      cols.counts = listVector(flat.offsets, batch.flatCounts);
      types.push({ name: "counts", type: "list<float32>" });
    }
    if (batch.nCounts) {
      cols.n_counts = makeVector(Float64Array.from(batch.nCounts));
      types.push({ name: "n_counts", type: "float64" });
    }
    for (const name of this.obsColumns) {
      if (name === "n_counts" && batch.nCounts) {
        const col = batch.obs![name];
        for (let i = 0; i < n; i++) {
          if (Number(col[i]) !== batch.nCounts[i]) {
            throw new Error(`TokenizedDatasetWriter: carried obs column n_counts differs from the library sizes at cell ${batch.cellIds[i]}`);
          }
        }
        continue; // stored once, as the n_counts column
      }
      if (name in cols) throw new Error(`obs column "${name}" clashes with a dataset column name`);
      const col = batch.obs![name];
      if (col.length !== n) throw new Error(`TokenizedDatasetWriter: obs column "${name}" has ${col.length} values for ${n} cells`);
      const known = this.columns?.find((c) => c.name === name)?.type;
      const t = known ?? obsType(col);
      if (t === "float64") cols[name] = makeVector(col instanceof Float64Array ? col : Float64Array.from(col as unknown as ArrayLike<number>));
      else if (t === "bool") cols[name] = vectorFromArray(Array.from(col as boolean[], Boolean), new Bool());
      else cols[name] = utf8Vector(Array.from(col as ArrayLike<unknown>, (v) => String(v)));
      types.push({ name, type: t });
    }
    this.columns ??= types;
    const table = new Table(cols);
    if (!this.shard) {
      const file = `shard-${String(this.shards.length).padStart(5, "0")}.arrow`;
      const fd = fs.openSync(path.join(this.tmp, file), "w");
      const writer = new RecordBatchFileWriter();
      const sink = new FileSink(fd, path.join(this.tmp, file));
      writer.reset(sink as unknown as A.AsyncByteQueue<Uint8Array>);
      this.shard = { fd, writer, sink, cells: 0, tokens: 0 };
      this.shards.push({ file, n_cells: 0 });
    }
    // write record batches, not the Table: RecordBatchWriter.write(Table) finishes the file
    for (const rb of table.batches) this.shard.writer.write(rb);
    this.shard.cells += n;
    this.shard.tokens += flat.values.length;
    this.shards[this.shards.length - 1].n_cells = this.shard.cells;
    this.nCells += n;
    if (this.shard.cells >= (this.opts.shardCells ?? 100_000) || this.shard.tokens >= (this.opts.shardTokens ?? 64_000_000)) this.closeShard();
  }

  private closeShard(): void {
    if (!this.shard) return;
    this.shard.writer.finish();
    // size and checksum of what was written, so a truncated or altered shard is caught when read
    Object.assign(this.shards[this.shards.length - 1], { bytes: this.shard.sink.bytes, sha256: this.shard.sink.hash.digest("hex") });
    const { fd } = this.shard;
    this.shard = undefined;
    syncClose(fd, path.join(this.tmp, this.shards[this.shards.length - 1].file));
  }

  /** Close the last shard, write `manifest.json` (and `extraFiles`), then move the folder to its final name. */
  finish(extraFiles: Record<string, string> = {}): TokenizedManifest {
    if (this.done) throw new Error("TokenizedDatasetWriter: finish called twice");
    try {
      this.closeShard();
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
      writeFileAtomic(path.join(this.tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
      for (const [name, text] of Object.entries(extraFiles)) writeFileAtomic(path.join(this.tmp, name), text);
      commitDir(this.tmp, this.dir, this.opts.force ?? false, { command: "tokenize" });
      this.done = true;
      return manifest;
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Remove the temporary folder (nothing is written under the final name). */
  abort(): void {
    if (this.shard) {
      try {
        fs.closeSync(this.shard.fd);
      } catch {
        /* already closed */
      }
      this.shard = undefined;
    }
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
    if ((data.inputIds ?? []).length === 0 && !data.flat && data.cellIds.length === 0) w.append({ ...data, inputIds: [] });
    else w.append(data);
  } catch (e) {
    w.abort();
    throw e;
  }
  return w.finish();
}

/**
 * Refuse a dataset whose cell ids repeat (e.g. one merged with itself): the same cell could land in
 * both the training and the validation split. @throws Error naming the folder and the first ids
 */
export function assertUniqueCellIds(dir: string, cellIds: readonly string[]): void {
  const seen = new Set<string>();
  const dupes: string[] = [];
  let n = 0;
  for (const id of cellIds) {
    if (!seen.has(id)) seen.add(id);
    else if (n++ < 5) dupes.push(id);
  }
  if (n > 0) throw new Error(`${dir}: ${n} cell id(s) occur more than once (e.g. ${dupes.join(", ")}); a repeated cell could be both trained and validated on — re-tokenize or re-merge without the copies`);
}

/** Read and check `manifest.json` of a tokenized dataset folder. */
export function readTokenizedManifest(dir: string): TokenizedManifest {
  const file = path.join(dir, "manifest.json");
  if (!fs.existsSync(dir)) throw new Error(`tokenized dataset ${dir} does not exist`);
  if (!fs.existsSync(file)) throw new Error(`${dir} is not a tokenized dataset: manifest.json is missing`);
  let m: TokenizedManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8")) as TokenizedManifest;
  } catch {
    throw new Error(`${file}: not valid JSON (truncated or not a manifest)`); // the parser's message would quote the file
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
  const tables = manifest.shards.map((shard) => {
    const buf = readShardChecked(dir, shard);
    const file = path.join(dir, shard.file);
    try {
      return { file, table: tableFromIPC(buf), rows: shard.n_cells };
    } catch {
      // the library's message can quote the file's first bytes (as a number): never echo contents
      throw new Error(`${file}: unreadable token shard (not an Arrow IPC file, or truncated or corrupt); re-run cellfm tokenize`);
    }
  });
  return assembleTokenized(dir, manifest, tables);
}

/**
 * The dataset's columns from its shards' tables (whole shards, or the slices of a range), cell
 * order. @throws Error naming the shard file when a table disagrees with the manifest.
 */
function assembleTokenized(dir: string, manifest: TokenizedManifest, tables: { file: string; table: A.Table; rows: number }[]): TokenizedDataset {
  const cellIds: string[] = [];
  const inputIds: Int32Array[] = [];
  const values: Float32Array[] = [];
  const nCountsParts: Float64Array[] = [];
  const countsAll: Float32Array[] = [];
  const lengthsAll: number[] = [];
  const obsParts: Record<string, ObsValues[]> = {};
  for (const name of manifest.obs_columns) obsParts[name] = [];
  let hasValues = false;
  for (const { file, table, rows } of tables) {
    if (table.numRows !== rows) {
      throw new Error(`${file}: ${table.numRows} cells, manifest says ${rows}`);
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
    const ccol = manifest.columns.some((c) => c.name === "counts" && c.type === "list<float32>") ? table.getChild("counts") : null;
    if (ccol) {
      for (const d of ccol.data) {
        const offs = d.valueOffsets as Int32Array;
        const child = d.children[0];
        const flat = (child.values as Float32Array).subarray(child.offset);
        for (let i = 0; i < d.length; i++) countsAll.push(flat.subarray(offs[d.offset + i], offs[d.offset + i + 1]));
      }
    }
    const ncol = table.getChild("n_counts");
    if (ncol && manifest.columns.some((c) => c.name === "n_counts" && c.type === "float64")) {
      const arr = Float64Array.from(ncol.toArray() as Float64Array);
      if (arr.length !== table.numRows) throw new Error(`${file}: n_counts column has ${arr.length} values for ${table.numRows} cells`);
      nCountsParts.push(arr);
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
  assertUniqueCellIds(dir, cellIds);
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
  let nCounts: Float64Array | undefined;
  if (nCountsParts.length > 0) {
    if (nCountsParts.reduce((k, p) => k + p.length, 0) !== cellIds.length) throw new Error(`${dir}: the n_counts column is missing from some shards`);
    nCounts = new Float64Array(cellIds.length);
    let o = 0;
    for (const p of nCountsParts) {
      nCounts.set(p, o);
      o += p.length;
    }
  }
  return {
    manifest,
    cellIds,
    inputIds,
    lengths: Int32Array.from(lengthsAll),
    values: hasValues ? values : undefined,
    nCounts,
    counts: countsAll.length === cellIds.length && countsAll.length > 0 ? countsAll : undefined,
    obs,
  };
}

/**
 * Check a shard against its manifest entry without holding it in memory: size, then SHA-256 read in
 * 4 MiB blocks. @throws Error as {@link readShardChecked}.
 */
function verifyShardStreaming(dir: string, shard: TokenizedShard): string {
  const file = containedPath(dir, shard.file, `${path.join(dir, "manifest.json")}: shard`);
  if (!fs.existsSync(file)) throw new Error(`${dir}: shard ${shard.file} listed in manifest.json is missing`);
  const size = fs.statSync(file).size;
  if (shard.bytes !== undefined && size !== shard.bytes) {
    throw new Error(`${file}: ${size < shard.bytes ? "truncated" : "altered"} token shard: ${size} bytes on disk, manifest.json records ${shard.bytes}; re-run cellfm tokenize`);
  }
  if (shard.sha256) {
    const h = crypto.createHash("sha256");
    const fd = fs.openSync(file, "r");
    try {
      const buf = Buffer.allocUnsafe(1 << 22);
      let n: number;
      while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
    if (h.digest("hex") !== shard.sha256) throw new Error(`${file}: corrupt token shard: its SHA-256 differs from the one manifest.json records; re-run cellfm tokenize`);
  }
  return file;
}

/**
 * Rows of each record batch of an Arrow IPC file, in file order, from the message headers only
 * (Arrow columnar format, "Encapsulated message format": continuation 0xFFFFFFFF, int32 metadata
 * length, flatbuffer `Message`, body; the stream starts after the 8-byte file magic and ends at a
 * zero-length marker). No body is read.
 */
function recordBatchRows(file: string): number[] {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(8);
    const rows: number[] = [];
    for (let off = 8; off + 8 <= size; ) {
      fs.readSync(fd, head, 0, 8, off);
      let metaLen = head.readInt32LE(0);
      let pre = 4;
      if (metaLen === -1) (metaLen = head.readInt32LE(4)), (pre = 8);
      if (metaLen === 0) break;
      if (!(metaLen > 0 && off + pre + metaLen <= size)) throw new Error(`${file}: unreadable token shard (bad message at byte ${off}); re-run cellfm tokenize`);
      const meta = Buffer.alloc(metaLen);
      fs.readSync(fd, meta, 0, metaLen, off + pre);
      const m = arrow.Message.decode(meta);
      if (m.headerType === arrow.MessageHeader.RecordBatch) rows.push(Number((m.header() as { length: number | bigint }).length));
      off += pre + metaLen + Number(m.bodyLength);
    }
    return rows;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Read cells `[start, end)` of a tokenized dataset, reading from disk only the record batches that
 * hold them (and streaming the checksum of the shards they are in), so memory is bounded by the
 * range, not by the dataset: `embed --shard k/N` of a large dataset. The result is the same as
 * slicing {@link readTokenizedDataset}'s.
 * @returns the cells, and how many record batches were decoded (for tests).
 * @throws Error as {@link readTokenizedDataset}, or when the range is not within the dataset.
 */
export async function readTokenizedRange(dir: string, start: number, end: number): Promise<TokenizedDataset & { batchesRead: number }> {
  const manifest = readTokenizedManifest(dir);
  const total = manifest.shards.reduce((k, s) => k + s.n_cells, 0);
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= total)) {
    throw new Error(`${dir}: cells [${start}, ${end}) are not within its ${total} cells`);
  }
  const tables: { file: string; table: A.Table; rows: number }[] = [];
  /** rows to keep of the assembled tables: [from, to) in their concatenation. */
  const keep: [number, number][] = [];
  let assembled = 0;
  let batchesRead = 0;
  let first = 0;
  for (const shard of manifest.shards) {
    const a = Math.max(start, first) - first;
    const b = Math.min(end, first + shard.n_cells) - first;
    first += shard.n_cells;
    if (a >= b) continue;
    const file = verifyShardStreaming(dir, shard);
    const rows = recordBatchRows(file);
    if (rows.reduce((k, r) => k + r, 0) !== shard.n_cells) throw new Error(`${file}: ${rows.reduce((k, r) => k + r, 0)} cells, manifest says ${shard.n_cells}`);
    const fh = await fs.promises.open(file, "r");
    try {
      const reader = await arrow.RecordBatchReader.from(fh);
      await reader.open();
      if (!reader.isFile() || reader.numRecordBatches !== rows.length) throw new Error(`${file}: unreadable token shard (${reader.numRecordBatches} record batches, ${rows.length} messages); re-run cellfm tokenize`);
      const batches: A.RecordBatch[] = [];
      let skipped = 0;
      for (let i = 0, r0 = 0; i < rows.length; r0 += rows[i], i++) {
        if (r0 + rows[i] <= a) {
          skipped += rows[i];
          continue;
        }
        if (r0 >= b) break;
        const rb = await reader.readRecordBatch(i);
        if (!rb || rb.numRows !== rows[i]) throw new Error(`${file}: unreadable record batch ${i}; re-run cellfm tokenize`);
        batches.push(rb);
        batchesRead++;
      }
      const table = new arrow.Table(batches);
      tables.push({ file, table, rows: table.numRows });
      keep.push([assembled + a - skipped, assembled + b - skipped]);
      assembled += table.numRows;
    } catch (e) {
      if ((e as Error).message.startsWith(file)) throw e;
      throw new Error(`${file}: unreadable token shard, truncated or corrupt (${(e as Error).message}); re-run cellfm tokenize`);
    } finally {
      await fh.close();
    }
  }
  return { ...pickRows(assembleTokenized(dir, manifest, tables), keep), batchesRead };
}

/** The cells of `ds` in the row ranges `keep` (in order); per-cell arrays stay views. */
function pickRows(ds: TokenizedDataset, keep: [number, number][]): TokenizedDataset {
  const list = <T>(a: T[]): T[] => keep.flatMap(([x, y]) => a.slice(x, y));
  const f64 = (a: Float64Array): Float64Array => {
    const out = new Float64Array(keep.reduce((k, [x, y]) => k + y - x, 0));
    let o = 0;
    for (const [x, y] of keep) out.set(a.subarray(x, y), o), (o += y - x);
    return out;
  };
  const cellIds = list(ds.cellIds);
  const obs: ObsTable = { index: cellIds, columns: {} };
  for (const [k, v] of Object.entries(ds.obs.columns)) obs.columns[k] = v instanceof Float64Array ? f64(v) : list(v as (string | boolean)[]) as ObsValues;
  return {
    manifest: ds.manifest,
    cellIds,
    inputIds: list(ds.inputIds),
    lengths: Int32Array.from(list(Array.from(ds.lengths))),
    values: ds.values && list(ds.values),
    nCounts: ds.nCounts && f64(ds.nCounts),
    counts: ds.counts && list(ds.counts),
    obs,
  };
}
