/**
 * `cellfm merge`: join the outputs of `--shard k/N` jobs (or any datasets of one kind) into one, in
 * shard order. Tokenized datasets (folders) are joined by copying their Arrow shard files under one
 * manifest (no re-encoding; the summary is recomputed over all cells); embedding files (Arrow IPC from
 * `cellfm embed`) are concatenated row-wise. The result equals what one unsharded run writes (tested),
 * apart from creation times and run times.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { tableFromIPC } from "./arrow.js";
import { assertNoOverlap, assertWritable, commitDir, containedPath, tempDirFor, writeFileAtomic } from "../io.js";
import { lockOutput, withOutputLocksSync } from "../lock.js";
import { readEmbeddings, writeEmbeddings } from "./embeddings.js";
import { cellfmVersion, readShardChecked, readTokenizedManifest, type TokenizedManifest } from "./tokenized.js";
import type { ObsValues } from "./types.js";

/** What {@link mergeOutputs} did. */
export interface MergeSummary {
  kind: "tokenized" | "embeddings";
  parts: number;
  nCells: number;
}

/**
 * Order parts by shard index when they are shards, checking that they are shards 0..N-1 of one N,
 * each once; parts without shard information keep the given order.
 * @throws Error naming the parts when some are shards and some not, N differs, or a shard is missing/repeated.
 */
function orderParts<T>(parts: { name: string; shard?: { index: number; count: number }; item: T }[]): T[] {
  const withShard = parts.filter((p) => p.shard);
  if (withShard.length === 0) return parts.map((p) => p.item);
  if (withShard.length !== parts.length) {
    throw new Error(`cannot merge shards with non-shards: ${parts.filter((p) => !p.shard).map((p) => p.name).join(", ")} (no --shard record)`);
  }
  const n = parts[0].shard!.count;
  const bad = parts.find((p) => p.shard!.count !== n);
  if (bad) throw new Error(`${bad.name} is shard ${bad.shard!.index}/${bad.shard!.count}, but ${parts[0].name} is of ${n} shards`);
  const byIndex = new Map<number, (typeof parts)[number]>();
  for (const p of parts) {
    const prev = byIndex.get(p.shard!.index);
    if (prev) throw new Error(`${prev.name} and ${p.name} are both shard ${p.shard!.index}/${n}`);
    byIndex.set(p.shard!.index, p);
  }
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length) throw new Error(`shards ${missing.map((i) => `${i}/${n}`).join(", ")} are missing; give all ${n} outputs`);
  return Array.from({ length: n }, (_, i) => byIndex.get(i)!.item);
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

type Summary = Record<string, unknown> & { cells_dropped_empty?: string[] };

/** The tokenizer summary of the joined parts: counts added, dropped cells concatenated, lengths recomputed. */
function mergeSummaries(parts: Summary[], lengths: Int32Array): Summary {
  const out: Summary = { ...parts[0] };
  delete out.shard;
  for (const k of ["n_cells", "cells_failing_filter_pass", "cells_written", "cells_truncated", "cells_with_exact_value_ties", "seconds"]) {
    if (typeof parts[0][k] === "number") out[k] = parts.reduce((s, p) => s + Number(p[k] ?? 0), 0);
  }
  if (typeof out.seconds === "number") out.seconds = Number(out.seconds.toFixed(3));
  out.cells_dropped_empty = parts.flatMap((p) => p.cells_dropped_empty ?? []);
  const L = lengths.slice().sort();
  const n = L.length;
  out.length_min = n ? L[0] : 0;
  out.length_median = n === 0 ? 0 : n % 2 ? L[(n - 1) / 2] : (L[n / 2 - 1] + L[n / 2]) / 2;
  out.length_max = n ? L[n - 1] : 0;
  return out;
}

/** Join tokenized dataset folders (see the module comment). */
function mergeTokenized(inputs: string[], output: string, force: boolean): MergeSummary {
  const parts = orderParts(
    inputs.map((dir) => {
      const m = readTokenizedManifest(dir);
      return { name: dir, shard: m.shard, item: { dir, m } };
    }),
  );
  const first = parts[0].m;
  const nonEmpty = parts.filter((p) => p.m.n_cells > 0);
  for (const p of parts.slice(1)) {
    for (const k of ["encoding", "model_version", "dictionary", "medians", "values_kind", "n_bins", "binning_seed", "top_genes"] as const) {
      if (!same(p.m[k], first[k])) throw new Error(`${p.dir} has ${k} ${JSON.stringify(p.m[k])}, ${parts[0].dir} has ${JSON.stringify(first[k])}; only outputs of one tokenization can be merged`);
    }
    if (first.shard && p.m.source?.sha256 !== first.source?.sha256) {
      throw new Error(`${p.dir} was tokenized from a different input (sha256 ${p.m.source?.sha256?.slice(0, 12)}…) than ${parts[0].dir} (${first.source?.sha256?.slice(0, 12)}…)`);
    }
  }
  for (const p of nonEmpty.slice(1)) {
    if (!same(p.m.columns, nonEmpty[0].m.columns)) throw new Error(`${p.dir} has columns ${JSON.stringify(p.m.columns)}, ${nonEmpty[0].dir} has ${JSON.stringify(nonEmpty[0].m.columns)}`);
  }
  assertWritable(output, force, { command: "tokenize", kind: "dir" });
  const tmp = tempDirFor(output, "tokenize");
  try {
    const shards: TokenizedManifest["shards"] = [];
    const lengths: number[] = [];
    const firstSeen = new Map<string, string>();
    const dupes: string[] = [];
    let nDupes = 0;
    for (const p of nonEmpty) {
      for (const s of p.m.shards) {
        const src = containedPath(p.dir, s.file, `${path.join(p.dir, "manifest.json")}: shard`);
        const buf = readShardChecked(p.dir, s);
        let table: ReturnType<typeof tableFromIPC>;
        try {
          table = tableFromIPC(buf);
        } catch {
          throw new Error(`${src}: unreadable token shard (not an Arrow IPC file, or truncated); re-run cellfm tokenize`);
        }
        const len = table.getChild("length");
        if (!len || len.length !== s.n_cells) throw new Error(`${src}: ${len?.length ?? 0} cells, manifest says ${s.n_cells}`);
        for (const id of table.getChild("cell_id") ?? []) {
          const prev = firstSeen.get(String(id));
          if (prev === undefined) firstSeen.set(String(id), p.dir);
          else if (nDupes++ < 5) dupes.push(`${String(id)} (${prev} and ${p.dir})`);
        }
        const file = `shard-${String(shards.length).padStart(5, "0")}.arrow`;
        writeFileAtomic(path.join(tmp, file), buf);
        for (const v of len.toArray() as Int32Array) lengths.push(v);
        shards.push({ file, n_cells: s.n_cells, ...(s.bytes !== undefined ? { bytes: s.bytes, sha256: s.sha256 } : {}) });
      }
    }
    if (nDupes > 0) {
      throw new Error(`cannot merge: ${nDupes} cell id(s) occur more than once in the parts, e.g. ${dupes.join(", ")}; a cell merged twice would be trained and validated on twice`);
    }
    const { shard: _shard, ...meta } = first;
    void _shard;
    const manifest: TokenizedManifest = {
      ...meta,
      n_cells: parts.reduce((a, p) => a + p.m.n_cells, 0),
      shards,
      columns: nonEmpty[0]?.m.columns ?? first.columns,
      obs_columns: nonEmpty[0]?.m.obs_columns ?? first.obs_columns,
      cellfm_version: cellfmVersion(),
      created: new Date().toISOString(),
    };
    writeFileAtomic(path.join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    const sums = parts.map((p) => path.join(p.dir, "summary.json"));
    if (sums.every((f) => fs.existsSync(f))) {
      const merged = mergeSummaries(sums.map((f) => JSON.parse(fs.readFileSync(f, "utf8")) as Summary), Int32Array.from(lengths));
      writeFileAtomic(path.join(tmp, "summary.json"), JSON.stringify(merged, null, 2) + "\n");
    }
    commitDir(tmp, output, force, { command: "tokenize" });
    return { kind: "tokenized", parts: parts.length, nCells: manifest.n_cells };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Concatenate embedding files (see the module comment). Metadata other than the shard must agree. */
function mergeEmbeddings(inputs: string[], output: string, force: boolean): MergeSummary {
  const parts = orderParts(
    inputs.map((file) => {
      const e = readEmbeddings(file);
      const shard = e.meta.shard ? (JSON.parse(e.meta.shard) as { index: number; count: number }) : undefined;
      return { name: file, shard, item: { file, e } };
    }),
  );
  const volatile = new Set(["shard", "created", "seconds"]);
  const key = (m: Record<string, string>) => JSON.stringify(Object.entries(m).filter(([k]) => !volatile.has(k)).sort());
  const first = parts[0].e;
  for (const p of parts.slice(1)) {
    if (p.e.dim !== first.dim) throw new Error(`${p.file} has embeddings of size ${p.e.dim}, ${parts[0].file} of ${first.dim}`);
    if (key(p.e.meta) !== key(first.meta)) throw new Error(`${p.file} and ${parts[0].file} come from different runs (checkpoint, layer, pooling or input differ); only shards of one run can be merged`);
    if (!same(Object.keys(p.e.obs.columns), Object.keys(first.obs.columns))) throw new Error(`${p.file} and ${parts[0].file} carry different obs columns`);
  }
  const firstSeen = new Map<string, string>();
  const dupes: string[] = [];
  for (const p of parts) {
    for (const c of p.e.cellIds) {
      const prev = firstSeen.get(c);
      if (prev === undefined) firstSeen.set(c, p.file);
      else dupes.push(`${c} (${prev} and ${p.file})`);
    }
  }
  if (dupes.length > 0) {
    throw new Error(`cannot merge: ${dupes.length} cell id(s) occur more than once in the parts, e.g. ${dupes.slice(0, 5).join(", ")}; each cell must be in one part only`);
  }
  const nCells = parts.reduce((a, p) => a + p.e.cellIds.length, 0);
  const data = new Float32Array(nCells * first.dim);
  const cellIds: string[] = [];
  let o = 0;
  for (const p of parts) {
    data.set(p.e.data, o * first.dim);
    o += p.e.cellIds.length;
    for (const c of p.e.cellIds) cellIds.push(c);
  }
  const columns: Record<string, ObsValues> = {};
  for (const name of Object.keys(first.obs.columns)) {
    const cols = parts.map((p) => p.e.obs.columns[name]);
    if (cols[0] instanceof Float64Array) {
      const all = new Float64Array(nCells);
      let q = 0;
      for (const c of cols) {
        all.set(c as Float64Array, q);
        q += c.length;
      }
      columns[name] = all;
    } else columns[name] = cols.flatMap((c) => Array.from(c as ArrayLike<string | boolean>)) as string[] | boolean[];
  }
  const { shard: _shard, ...meta } = first.meta;
  void _shard;
  writeEmbeddings(output, { cellIds, dim: first.dim, data, obs: { index: cellIds, columns }, meta }, { force });
  return { kind: "embeddings", parts: parts.length, nCells };
}

/**
 * Merge `inputs` into `output`: tokenized dataset folders into a folder, or embedding Arrow files into
 * a file. Shards (outputs of `--shard k/N`) are put in shard order whatever order they are given in,
 * and must be complete (0..N-1, each once).
 * @throws Error (nothing written) on mixed kinds, incomplete or repeated shards, parts of different
 *   runs, or an existing output without `force`.
 */
export function mergeOutputs(inputs: string[], output: string, opts: { force?: boolean } = {}): MergeSummary {
  return withOutputLocksSync(() => mergeOutputsLocked(inputs, output, opts));
}

function mergeOutputsLocked(inputs: string[], output: string, opts: { force?: boolean }): MergeSummary {
  if (inputs.length === 0) throw new Error("give the outputs to merge (--input a b c ...)");
  for (const f of inputs) if (!fs.existsSync(f)) throw new Error(`${f}: not found`);
  assertNoOverlap(output, inputs.map((f) => ({ path: f, label: "--input" })));
  const seen = new Map<string, string>();
  for (const f of inputs) {
    const real = fs.realpathSync(f);
    const prev = seen.get(real);
    if (prev !== undefined) throw new Error(`${f} is given twice (also as ${prev}); each output is merged once, or its cells would be duplicated`);
    seen.set(real, f);
  }
  lockOutput(output, "merge");
  const isDir = inputs.map((f) => fs.statSync(f).isDirectory());
  if (isDir.every(Boolean)) return mergeTokenized(inputs, output, opts.force ?? false);
  if (isDir.some(Boolean)) throw new Error("give either tokenized dataset folders or embedding files, not both");
  return mergeEmbeddings(inputs, output, opts.force ?? false);
}
