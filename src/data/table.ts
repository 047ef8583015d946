/**
 * User tables: `--obs` annotations, `file:` gene lists, `--truth` edge lists and gene-embedding TSVs,
 * read with csv-parse (https://csv.js.org/parse/, a maintained RFC 4180 parser) so that quoted
 * fields (R `write.table`), comma-separated files (pandas `to_csv`) and tab-separated files (the
 * bundled ones) all read the same way.
 *
 * The delimiter comes from the extension (`.csv` comma; `.tsv`, `.tab` tab; `.gz` is looked through),
 * else from the content: the first line that is not empty or a `#` comment is split on tabs when it
 * has a tab outside quotes, else on commas when it has one, else it is one column.
 */
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { parse } from "csv-parse/sync";
import type { ObsTable } from "./types.js";

/** A table as read: every field a trimmed string, rows of possibly different lengths. */
export interface TextTable {
  file: string;
  delimiter: "," | "\t";
  /** rows in file order, empty lines and (when `comments`) `#` lines dropped. */
  rows: string[][];
  /** 1-based line number of each row in the file, for messages. */
  lines: number[];
}

/** The delimiter a file's extension names, or undefined where the extension says nothing. */
function delimiterOfName(file: string): "," | "\t" | undefined {
  const name = file.toLowerCase().replace(/\.gz$/, "");
  if (name.endsWith(".csv")) return ",";
  if (name.endsWith(".tsv") || name.endsWith(".tab")) return "\t";
  return undefined;
}

/** Tab when the line has a tab outside double quotes, else comma when it has one, else tab (one column). */
export function sniffDelimiter(line: string): "," | "\t" {
  let inQuote = false;
  let comma = false;
  for (const ch of line) {
    if (ch === '"') inQuote = !inQuote;
    else if (!inQuote && ch === "\t") return "\t";
    else if (!inQuote && ch === ",") comma = true;
  }
  return comma ? "," : "\t";
}

/**
 * Read a CSV or TSV file (optionally gzipped) into rows of trimmed strings.
 * @param what how a message names the file's role, e.g. "obs table", "truth file".
 * @param opts.comments drop lines starting with `#` (gene lists, edge lists, embeddings; not obs tables,
 *   whose first field is a barcode).
 * @throws Error naming the file: missing, unreadable, or malformed quoting (with csv-parse's line number).
 */
export function readTextTable(file: string, what: string, opts: { comments?: boolean } = {}): TextTable {
  if (!fs.existsSync(file)) throw new Error(`${file}: ${what} not found`);
  if (fs.statSync(file).isDirectory()) throw new Error(`${file}: ${what} is a folder, expected a CSV or TSV file`);
  let buf = fs.readFileSync(file);
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) buf = zlib.gunzipSync(buf);
  const text = buf.toString("utf8").replace(/^\uFEFF/, "");
  const first = text.split(/\r?\n/).find((l) => l.trim() !== "" && !(opts.comments && l.startsWith("#"))) ?? "";
  const delimiter = delimiterOfName(file) ?? sniffDelimiter(first);
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      delimiter,
      relax_column_count: true,
      relax_quotes: true,
      skip_empty_lines: true,
      trim: true,
      comment: opts.comments ? "#" : undefined,
      comment_no_infix: true,
      info: true,
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (e) {
    throw new Error(`${file}: ${what} is not a readable ${delimiter === "," ? "CSV" : "TSV"} file (${(e as Error).message})`);
  }
  const rows: string[][] = [];
  const lines: number[] = [];
  for (const r of records) {
    if (r.record.every((f) => f === "")) continue;
    rows.push(r.record);
    lines.push(r.info.lines);
  }
  return { file, delimiter, rows, lines };
}

/**
 * Read a table of per-cell annotations and align it to `barcodes` (AnnData obs order). The first
 * row is the header; the first column holds the barcodes. A header one field shorter than the rows
 * (R `write.table` with row names) or with an empty first field (pandas `to_csv` with the index)
 * is read the same way. Columns whose every value is a number become float64; others strings.
 * @throws Error naming the file: no header, a duplicate barcode, or a barcode of the data with no row
 *   (with how many are missing).
 */
export function readObsTable(file: string, barcodes: string[]): ObsTable {
  const t = readTextTable(file, "obs table");
  if (t.rows.length === 0) throw new Error(`${file}: empty obs table`);
  let header = t.rows[0];
  const width = Math.max(...t.rows.slice(1, 100).map((r) => r.length), header.length);
  if (header.length === width - 1) header = ["", ...header]; // R write.table: no name for the row-name column
  const rows = new Map<string, string[]>();
  for (let i = 1; i < t.rows.length; i++) {
    const r = t.rows[i];
    if (rows.has(r[0])) throw new Error(`${file}: barcode "${r[0]}" has two rows (line ${t.lines[i]})`);
    rows.set(r[0], r);
  }
  const missing = barcodes.filter((b) => !rows.has(b));
  if (missing.length > 0) {
    const example = t.rows[1]?.[0];
    throw new Error(
      `${file}: no row for barcode "${missing[0]}"${missing.length > 1 ? ` (${missing.length} of ${barcodes.length} barcodes have none)` : ""}; ` +
        `the first column must hold the barcodes${example !== undefined ? ` (its first value is "${example}")` : ""}`,
    );
  }
  const columns: ObsTable["columns"] = {};
  for (let c = 1; c < header.length; c++) {
    const name = header[c] === "" ? `column_${c + 1}` : header[c];
    const vals = barcodes.map((b) => rows.get(b)![c] ?? "");
    const numeric = vals.every((v) => v !== "" && Number.isFinite(Number(v)));
    columns[name] = numeric ? Float64Array.from(vals, Number) : vals;
  }
  return { index: barcodes, columns };
}
