/**
 * Cell-embeddings file: the hand-off between `cellfm embed` (writer) and `cellfm assess` (reader).
 *
 * Format: one Arrow IPC **file** (`tableToIPC(table, "file")`, readable by pyarrow
 * `pyarrow.ipc.open_file(path).read_all()`, polars `pl.read_ipc` and R `arrow::read_ipc_file`) with
 *
 * | column      | Arrow type                         | meaning                                     |
 * |-------------|------------------------------------|---------------------------------------------|
 * | `cell_id`   | utf8                               | obs name of the cell (AnnData `obs_names`)  |
 * | obs columns | utf8 / float64 / bool              | carried obs columns (categories as strings) |
 * | `embedding` | fixed_size_list<float32>[dim]      | the cell's embedding, `dim` values          |
 *
 * Free-form provenance (checkpoint, layer, pooling, backend, ...) is stored as Arrow schema metadata
 * (string → string), e.g. `pyarrow` shows it as `table.schema.metadata`.
 */
import * as fs from "node:fs";
import {
  Bool,
  Data,
  DataType,
  Field,
  FixedSizeList,
  Float32,
  RecordBatch,
  Schema,
  Table,
  Utf8,
  makeData,
  makeVector,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
} from "./arrow.js";
import type * as A from "apache-arrow";
import type { Vector } from "apache-arrow";
import { firstNonFinite } from "../finite.js";
import { assertWritable, writeFileAtomic } from "../io.js";
import type { ObsTable, ObsValues } from "./types.js";

/** Name of the cell-id column. */
export const CELL_ID_COLUMN = "cell_id";
/** Name of the embedding column. */
export const EMBEDDING_COLUMN = "embedding";

/** Cell embeddings in memory. */
export interface CellEmbeddings {
  /** cell ids (obs names), length nCells. */
  cellIds: string[];
  /** embedding size (number of float32 values per cell). */
  dim: number;
  /** embeddings, row-major `[nCells, dim]`, float32. */
  data: Float32Array;
  /** carried obs columns (`index` = cellIds); may be absent on write. */
  obs?: ObsTable;
  /** provenance stored as Arrow schema metadata (checkpoint, layer, pool, backend, ...). */
  meta?: Record<string, string>;
}

/** What {@link readEmbeddings} returns: as {@link CellEmbeddings} with `obs` and `meta` always present. */
export interface LoadedEmbeddings extends CellEmbeddings {
  obs: ObsTable;
  meta: Record<string, string>;
}

function obsVector(name: string, values: ObsValues, n: number, file: string): Vector {
  if (values.length !== n) {
    throw new Error(`embeddings ${file}: obs column "${name}" has ${values.length} values, expected ${n} (one per cell)`);
  }
  if (values instanceof Float64Array) return makeVector(values);
  if (values.length > 0 && typeof values[0] === "boolean") {
    return vectorFromArray(values as boolean[], new Bool());
  }
  if (values.length === 0) return vectorFromArray([] as string[], new Utf8());
  return vectorFromArray((values as unknown[]).map((v) => (v == null ? null : String(v))), new Utf8());
}

/** @throws Error naming the first cell whose embedding has a NaN/±Inf (and how many values are). */
function checkFiniteRows(data: Float32Array, dim: number, cellIds: string[], what: string, hint: string): void {
  const i = firstNonFinite(data);
  if (i < 0) return;
  let n = 0;
  for (let j = i; j < data.length; j++) if (data[j] - data[j] !== 0) n++;
  const row = Math.floor(i / dim);
  throw new Error(`${what}: ${n} non-finite value${n === 1 ? "" : "s"} (first: ${data[i]} in row ${row}, cell "${cellIds[row]}"); ${hint}`);
}

/**
 * Write cell embeddings to an Arrow IPC file (see the module comment for the layout), atomically
 * (temporary file then rename, via `src/io.ts`).
 *
 * @param path output file (`.arrow` by convention).
 * @param e cell ids, `dim`, row-major float32 `data` of length `nCells * dim`, optional obs and metadata.
 * @param opts.force replace an existing file.
 * @throws Error when `path` exists without `force`, when `data.length !== cellIds.length * dim`, when an
 *   obs column has the wrong length or is named `cell_id`/`embedding`, when cell ids repeat, or when
 *   an embedding has a NaN/±Inf (naming the cell; nothing is written).
 */
export function writeEmbeddings(path: string, e: CellEmbeddings, opts: { force?: boolean } = {}): void {
  const n = e.cellIds.length;
  const dim = e.dim;
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`embeddings ${path}: dim must be a positive integer, got ${dim}`);
  if (e.data.length !== n * dim) {
    throw new Error(`embeddings ${path}: data has ${e.data.length} values, expected nCells * dim = ${n} * ${dim} = ${n * dim}`);
  }
  checkFiniteRows(e.data, dim, e.cellIds, `embeddings ${path}`, "the model produced them from a corrupt or diverged checkpoint; nothing was written");
  const seen = new Set<string>();
  for (const id of e.cellIds) {
    if (seen.has(id)) throw new Error(`embeddings ${path}: cell id "${id}" appears more than once`);
    seen.add(id);
  }
  assertWritable(path, opts.force ?? false, { kind: "file" });

  const columns: Record<string, Vector> = {};
  columns[CELL_ID_COLUMN] = vectorFromArray(e.cellIds, new Utf8());
  for (const [name, values] of Object.entries(e.obs?.columns ?? {})) {
    if (name === CELL_ID_COLUMN || name === EMBEDDING_COLUMN) {
      throw new Error(`embeddings ${path}: obs column name "${name}" is reserved`);
    }
    columns[name] = obsVector(name, values, n, path);
  }
  const child = makeData({ type: new Float32(), length: n * dim, nullCount: 0, data: e.data });
  const listType = new FixedSizeList(dim, new Field("item", new Float32(), false));
  columns[EMBEDDING_COLUMN] = makeVector(makeData({ type: listType, length: n, nullCount: 0, child }));

  const plain = new Table(columns);
  const meta = new Map<string, string>(Object.entries(e.meta ?? {}));
  const schema = new Schema(plain.schema.fields, meta);
  const table = new Table(schema, plain.batches.map((b) => new RecordBatch(schema, b.data)));
  writeFileAtomic(path, tableToIPC(table, "file"));
}

function columnToObs(name: string, vec: Vector, file: string): ObsValues {
  const t: A.DataType = vec.type;
  if (DataType.isBool(t)) return Array.from(vec, (v) => Boolean(v));
  if (DataType.isFloat(t) || DataType.isInt(t)) {
    const out = new Float64Array(vec.length);
    let i = 0;
    for (const v of vec) out[i++] = v == null ? NaN : Number(v);
    return out;
  }
  if (DataType.isUtf8(t) || DataType.isLargeUtf8(t) || DataType.isDictionary(t)) {
    return Array.from(vec, (v) => (v == null ? "" : String(v)));
  }
  throw new Error(`embeddings ${file}: obs column "${name}" has unsupported Arrow type ${String(t)}`);
}

/**
 * Read a cell-embeddings Arrow IPC file written by {@link writeEmbeddings} (or by pyarrow with the
 * same columns; `embedding` may also be a variable-size `list<float32|float64>` with equal lengths).
 *
 * @returns cell ids, `dim`, row-major float32 `data` `[nCells, dim]`, the other columns as obs
 *   (strings / Float64Array / boolean[]) and the schema metadata.
 * @throws Error naming the file when it is missing, not an Arrow IPC file, lacks `cell_id` or
 *   `embedding`, has null or ragged embeddings.
 */
export function readEmbeddings(path: string): LoadedEmbeddings {
  if (!fs.existsSync(path)) throw new Error(`embeddings file ${path} does not exist`);
  let table: A.Table;
  try {
    table = tableFromIPC(fs.readFileSync(path));
  } catch (err) {
    throw new Error(`embeddings file ${path} is not a readable Arrow IPC file (${(err as Error).message})`);
  }
  const names = table.schema.fields.map((f) => f.name);
  for (const need of [CELL_ID_COLUMN, EMBEDDING_COLUMN]) {
    if (!names.includes(need)) {
      throw new Error(`embeddings file ${path} has no "${need}" column (columns: ${names.join(", ") || "none"})`);
    }
  }
  const n = table.numRows;
  const idVec = table.getChild(CELL_ID_COLUMN)!;
  const cellIds = Array.from(idVec, (v) => (v == null ? "" : String(v)));

  const embVec = table.getChild(EMBEDDING_COLUMN)!;
  const et = embVec.type;
  let dim: number;
  if (DataType.isFixedSizeList(et)) dim = (et as A.FixedSizeList).listSize;
  else if (DataType.isList(et)) {
    const first = n > 0 ? embVec.get(0) : null;
    dim = first ? first.length : 0;
  } else {
    throw new Error(`embeddings file ${path}: column "embedding" must be a list of floats, got ${String(et)}`);
  }
  if (embVec.nullCount > 0) throw new Error(`embeddings file ${path}: column "embedding" has ${embVec.nullCount} null rows`);
  const data = new Float32Array(n * dim);
  if (DataType.isFixedSizeList(et)) {
    let row = 0;
    for (const chunk of embVec.data as A.Data<A.FixedSizeList>[]) {
      const child = chunk.children[0];
      const vals = child.values as ArrayLike<number>;
      const base = (child.offset + chunk.offset * dim);
      const len = chunk.length * dim;
      if (vals instanceof Float32Array) data.set(vals.subarray(base, base + len), row * dim);
      else for (let k = 0; k < len; k++) data[row * dim + k] = Number(vals[base + k]);
      row += chunk.length;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const v = embVec.get(i)!;
      if (v.length !== dim) {
        throw new Error(`embeddings file ${path}: row ${i} has ${v.length} values, row 0 has ${dim} (ragged embeddings)`);
      }
      for (let k = 0; k < dim; k++) data[i * dim + k] = Number(v.get(k));
    }
  }

  checkFiniteRows(data, dim, cellIds, `embeddings file ${path}`, "a non-finite embedding cannot be scored");
  const columns: Record<string, ObsValues> = {};
  for (const f of table.schema.fields) {
    if (f.name === CELL_ID_COLUMN || f.name === EMBEDDING_COLUMN) continue;
    columns[f.name] = columnToObs(f.name, table.getChild(f.name)!, path);
  }
  const meta: Record<string, string> = {};
  for (const [k, v] of table.schema.metadata) meta[k] = v;
  return { cellIds, dim, data, obs: { index: cellIds, columns }, meta };
}
