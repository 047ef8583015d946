/**
 * `runAssessment`: the whole 2023 study "Examining assumptions in scRNA-seq foundation model pre-training" (MIT 6.S898; docs/assess.md) on one dataset and any number of embeddings —
 * selection, HVGs, the three kinds of pairwise measures with within/between medians, standard metrics
 * (kNN accuracy, ASW, k-means NMI/ARI, batch ASW, graph connectivity), figures and a report — written
 * atomically to an output folder.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import cliProgress from "cli-progress";
import { initBackend, type BackendChoice } from "../backend.js";
import { assertWritable, commitDir, sha256File, tempDirFor } from "../io.js";
import { openCounts, sourceFileFor } from "../data/open.js";
import type { LoadedEmbeddings } from "../data/embeddings.js";
import { readEmbeddingInputs } from "./embedding-inputs.js";
import type { CountMatrixSource, ObsValues } from "../data/types.js";
import { selectCells, type Selection } from "./select.js";
import { GeneMoments, seuratHvg, TARGET_SUM } from "./hvg.js";
import { pca, projectPca } from "./linalg.js";
import { linearProbe, probeCells } from "./probe.js";
import { makeRng } from "../rng.js";
import { rankStandardize } from "./spearman.js";
import { knnAccuracy, type KnnGraph } from "./knn.js";
import { silhouetteScore, batchAsw, graphConnectivity, nmi, ari, kmeansClusters } from "./metrics.js";
import type { MeasureSpec, TypeBlock } from "./pairs.js";
import { AssessPool, InlineRunner, defaultThreads, type AssessRunner } from "./parallel.js";
import { aucLess, histogramAuc, Histogram1D, median } from "./stats.js";
import { renderFigure, withinBetweenSpec, jointSpec, sparsitySpec, scatterSpec } from "./figures.js";
import { writeReport, type AssessmentResult, type MeasureSummary, type RepresentationMetrics } from "./report.js";
import { checkThreadCount } from "../threads.js";
import { withOutputLocks } from "../lock.js";

/** Options of {@link runAssessment} (CLI flags in brackets). */
export interface AssessOptions {
  /** .h5ad or 10x folder of raw counts [--input]. */
  input: string;
  /** Arrow embeddings files (see src/data/embeddings.ts) [--embeddings]. */
  embeddings?: string[];
  /** display names, one per embedding (default: file name without extension; the obsm key for `.h5ad`) [--embedding-names]. */
  embeddingNames?: string[];
  /** obsm keys to score of every `.h5ad` in `embeddings` (`--obsm X_scVI,X_pca`). */
  obsm?: string[];
  /** obs column with cell types [--label], default "cell_type". */
  label?: string;
  /** obs column with batches [--batch]. */
  batch?: string;
  /** output folder [--output]. */
  output: string;
  minCells?: number;
  perType?: number;
  nHvg?: number;
  /** PCA to 50 dimensions before the HVG UMAP (default true; false = the study's exact setting) [--no-pca]. */
  pca?: boolean;
  nPcs?: number;
  seed?: number;
  layer?: string;
  useRaw?: boolean;
  force?: boolean;
  quiet?: boolean;
  backend?: BackendChoice;
  /** neighbours for kNN accuracy, UMAP and graph connectivity (default 15). */
  k?: number;
  kmeansRestarts?: number;
  /** UMAP epochs override (default umap-learn's rule: 200 above 10,000 cells). */
  umapEpochs?: number;
  /**
   * worker threads for the UMAP layouts and the all-pairs scan (default: the machine's cores, at most
   * 2; 1 = everything on the main thread). Results do not depend on it.
   */
  threads?: number;
  /**
   * Score embeddings whose recorded source (`source_sha256`, written by `cellfm embed`) is not the
   * `input` file [--allow-input-mismatch]; by default that is an error.
   */
  allowInputMismatch?: boolean;
  /**
   * Cell ids held out from training (e.g. a training run's validation cells) [--held-out-cells]: the
   * linear probe is fitted on the selected cells outside them and scored on every one of them of a
   * kept type. Default: a seeded stratified split of the selection (src/assess/probe.ts).
   */
  heldOutCells?: readonly string[];
  /** an already opened count matrix to use instead of opening `input` (benchmarks, in-memory data). */
  source?: CountMatrixSource;
}

function asStrings(v: ObsValues): string[] {
  if (Array.isArray(v)) return (v as (string | boolean)[]).map((x) => String(x));
  return Array.from(v as Float64Array, (x) => (Number.isNaN(x) ? "" : String(x)));
}

function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]+/g, "_");
}

/** A small stage logger + progress bar on stderr (silent when quiet or not a TTY for the bar). */
class Reporter {
  private bar?: cliProgress.SingleBar;
  private readonly t0 = Date.now();
  readonly timings: Record<string, number> = {};
  private last = Date.now();
  constructor(private readonly quiet: boolean) {}
  stage(name: string): void {
    const now = Date.now();
    this.stop();
    if (!this.quiet) process.stderr.write(`[assess ${((now - this.t0) / 1000).toFixed(1)}s] ${name}\n`);
  }
  /** Add the time since the previous `time` call to `key`. */
  time(key: string): void {
    this.timings[key] = (this.timings[key] ?? 0) + (Date.now() - this.last) / 1000;
    this.last = Date.now();
  }
  bar0(total: number, what: string): void {
    this.stop();
    if (this.quiet || !process.stderr.isTTY) return;
    this.bar = new cliProgress.SingleBar(
      { stream: process.stderr, format: `  ${what} [{bar}] {value}/{total} {percentage}% | {eta_formatted} left`, etaBuffer: 50 },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, 0);
  }
  tick(v: number): void {
    this.bar?.update(v);
  }
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

/**
 * Leave out of the selection (blank their label in `labels`) the cells that some embeddings file
 * lacks because they have zero counts: the tokenizer drops such cells (nothing to rank), so their
 * embeddings never exist. Reads the counts only when some labelled cell is missing. Other missing
 * cells stay, and are an error later.
 * @returns how many were left out, a few ids and why; undefined when none.
 */
function leaveOutEmptyCells(src: CountMatrixSource, embs: LoadedEmbeddings[], labels: string[]): { n: number; examples: string[]; reason: string } | undefined {
  if (embs.length === 0) return undefined;
  const sets = embs.map((e) => new Set(e.cellIds));
  const missing = new Uint8Array(src.nCells);
  let any = false;
  src.obs.index.forEach((id, i) => {
    if (labels[i] !== "" && sets.some((s) => !s.has(id))) any = true, (missing[i] = 1);
  });
  if (!any) return undefined;
  const examples: string[] = [];
  let n = 0;
  for (const ch of src.chunks(4096)) {
    for (let r = 0; r < ch.nCells; r++) {
      const i = ch.start + r;
      if (!missing[i]) continue;
      let total = 0;
      for (let p = ch.indptr[r]; p < ch.indptr[r + 1]; p++) total += ch.data[p];
      if (total !== 0) continue;
      labels[i] = "";
      n++;
      if (examples.length < 3) examples.push(src.obs.index[i]);
    }
  }
  return n > 0 ? { n, examples, reason: "cells with zero counts have no embedding (the tokenizer drops them) and are left out" } : undefined;
}

/**
 * Run the assessment and write `<output>/report.md`, `report.html` (self-contained), `metrics.json`,
 * `figures/*.svg|png`. The folder is built under a temporary name and renamed at the end.
 * @returns the computed result (also in metrics.json).
 * @throws Error (nothing written) when the output exists without `force`, the label/batch column is
 *   missing (the message lists the obs columns), fewer than 2 types pass `minCells`, or an embeddings
 *   file lacks some selected cells / shares no cell id with the data.
 */
export async function runAssessment(opts: AssessOptions): Promise<AssessmentResult> {
  return withOutputLocks(() => runAssessmentLocked(opts));
}

async function runAssessmentLocked(opts: AssessOptions): Promise<AssessmentResult> {
  const labelKey = opts.label ?? "cell_type";
  const minCells = opts.minCells ?? 500;
  const perType = opts.perType ?? minCells;
  const nHvgWanted = opts.nHvg ?? 2000;
  const usePca = opts.pca ?? true;
  const seed = opts.seed ?? 0;
  const k = opts.k ?? 15;
  const rep = new Reporter(opts.quiet ?? false);
  const embFiles = opts.embeddings ?? [];
  assertWritable(opts.output, opts.force ?? false, {
    command: "assess",
    kind: "dir",
    lock: "assess",
    inputs: [{ path: opts.input, label: "--input" }, ...embFiles.map((f) => ({ path: f, label: "--embeddings" }))],
  });
  const embInputs = await readEmbeddingInputs(embFiles, opts.obsm, opts.embeddingNames);

  rep.stage("opening data");
  const backend = await initBackend(opts.backend ?? "auto");
  const src = opts.source ?? (await openCounts(opts.input, { layer: opts.layer, useRaw: opts.useRaw }));
  try {
    const cols = Object.keys(src.obs.columns);
    for (const [flag, key] of [["--label", labelKey], ["--batch", opts.batch]] as const) {
      if (key !== undefined && !(key in src.obs.columns)) {
        throw new Error(`${opts.input}: obs has no column "${key}" (${flag}); available columns: ${cols.join(", ") || "none"}`);
      }
    }
    const allLabels = asStrings(src.obs.columns[labelKey]);
    const loaded = embInputs.map((x) => x.e);
    const leftOut = leaveOutEmptyCells(src, loaded, allLabels);
    if (leftOut) rep.stage(`note: ${leftOut.n} ${leftOut.reason} (e.g. ${leftOut.examples.join(", ")})`);
    const allBatches = opts.batch ? asStrings(src.obs.columns[opts.batch]) : undefined;
    const sel: Selection = selectCells(allLabels, { minCells, perType, seed, labelName: labelKey });
    const nSel = sel.rows.length;
    const probe = probeCells(sel, allLabels, src.obs.index, opts.heldOutCells ? new Set(opts.heldOutCells) : undefined, makeRng(`${seed}:probe`));
    const nExtra = probe.extraRows.length;

    // embeddings: every selected cell must be present
    const embs: { name: string; file: string; e: LoadedEmbeddings; rows: Int32Array; probeRows: Int32Array; extra: number }[] = [];
    let inputSha: string | undefined;
    for (const inp of embInputs) {
      const { e, file: embFile } = inp;
      // embeddings written by cellfm embed record the counts they come from: same cell ids are not
      // enough (a copy with a permuted obs index has them too), the bytes must be the same
      const recorded = e.meta.source_sha256;
      if (recorded && !opts.source) {
        inputSha ??= await sha256File(sourceFileFor(opts.input));
        if (inputSha !== recorded) {
          const msg =
            `embeddings ${embFile} were computed from ${e.meta.source || "another file"} (sha256 ${recorded.slice(0, 12)}…), ` +
            `but --input ${opts.input} has sha256 ${inputSha.slice(0, 12)}…: not the same data`;
          if (!opts.allowInputMismatch) throw new Error(`${msg}; pass --allow-input-mismatch to score them anyway`);
          process.stderr.write(`cellfm assess: warning: ${msg} (scored anyway: --allow-input-mismatch)\n`);
        }
      }
      const pos = new Map<string, number>();
      e.cellIds.forEach((id, i) => pos.set(id, i));
      const rows = new Int32Array(nSel);
      const missing: string[] = [];
      let nMissing = 0;
      for (let i = 0; i < nSel; i++) {
        const id = src.obs.index[sel.rows[i]];
        const p = pos.get(id);
        if (p === undefined) {
          nMissing++;
          if (missing.length < 3) missing.push(id);
        } else rows[i] = p;
      }
      if (nMissing > 0) {
        const common = src.obs.index.filter((id) => pos.has(id)).length;
        throw new Error(
          `embeddings ${embFile}: ${nMissing} of the ${nSel} selected cells of ${opts.input} have no embedding (e.g. ${missing.join(", ")}); ` +
            `${common} of ${src.nCells} data cell ids appear in the file — were the embeddings computed from this data?`,
        );
      }
      const probeRows = Int32Array.from(probe.extraRows, (r) => {
        const p = pos.get(src.obs.index[r]);
        if (p === undefined) throw new Error(`embeddings ${embFile}: held-out cell ${src.obs.index[r]} (linear probe) has no embedding`);
        return p;
      });
      // obsm arrays may hold NaN rows (cells another tool, or cellfm embed of one shard, left out)
      let nonFinite = 0;
      for (const r of [...rows, ...probeRows]) {
        for (let j = 0; j < e.dim; j++) {
          if (!Number.isFinite(e.data[r * e.dim + j])) {
            nonFinite++;
            break;
          }
        }
      }
      if (nonFinite > 0) {
        throw new Error(`embeddings ${inp.name} (${embFile}): ${nonFinite} of the selected cells have a NaN or infinite embedding; score cells that all have one`);
      }
      const dataIds = new Set(src.obs.index);
      const extra = e.cellIds.filter((id) => !dataIds.has(id)).length;
      embs.push({ name: inp.name, file: embFile, e, rows, probeRows, extra });
    }
    rep.time("open");

    // one streaming pass: sparsity, gene moments (all cells), selected rows
    rep.stage(`reading ${src.nCells} cells × ${src.nGenes} genes`);
    const position = new Int32Array(src.nCells).fill(-1);
    sel.rows.forEach((r, i) => (position[r] = i));
    // the probe's held-out cells outside the selection: rows nSel.. of the arrays below
    const extraPos = new Map<number, number>();
    probe.extraRows.forEach((r, k) => extraPos.set(r, nSel + k));
    const moments = new GeneMoments(src.nGenes);
    const sparsAll = new Histogram1D(0, 1, 50);
    const sparsSel = new Histogram1D(0, 1, 50);
    const zeroFracAll: number[] = [];
    const selIdx: Int32Array[] = new Array(nSel + nExtra);
    const selVal: Float32Array[] = new Array(nSel + nExtra);
    rep.bar0(src.nCells, "cells");
    for (const ch of src.chunks(2048)) {
      for (let r = 0; r < ch.nCells; r++) {
        const lo = ch.indptr[r];
        const hi = ch.indptr[r + 1];
        let nz = 0;
        let total = 0;
        for (let p = lo; p < hi; p++) {
          if (ch.data[p] !== 0) nz++;
          total += ch.data[p];
        }
        const zf = 1 - nz / src.nGenes;
        sparsAll.add(zf);
        zeroFracAll.push(zf);
        moments.addCell(ch.indices, ch.data, lo, hi);
        const sp = position[ch.start + r] >= 0 ? position[ch.start + r] : (extraPos.get(ch.start + r) ?? -1);
        if (sp >= 0) {
          if (sp < nSel) sparsSel.add(zf);
          const idx = new Int32Array(hi - lo);
          const val = new Float32Array(hi - lo);
          const f = total > 0 ? TARGET_SUM / total : 0;
          for (let p = lo; p < hi; p++) {
            idx[p - lo] = ch.indices[p];
            val[p - lo] = Math.log1p(ch.data[p] * f);
          }
          selIdx[sp] = idx;
          selVal[sp] = val;
        }
      }
      rep.tick(ch.start + ch.nCells);
    }
    rep.time("read");

    rep.stage("highly variable genes");
    const mv = moments.meanVar();
    const hvg = seuratHvg(mv.mean, mv.variance, nHvgWanted);
    const p = hvg.genes.length;
    const col = new Int32Array(src.nGenes).fill(-1);
    hvg.genes.forEach((g, j) => (col[g] = j));
    const X = new Float32Array(nSel * p);
    const Xe = new Float32Array(nExtra * p); // the probe's held-out cells outside the selection
    for (let i = 0; i < nSel + nExtra; i++) {
      const idx = selIdx[i];
      const val = selVal[i];
      const [M, o] = i < nSel ? [X, i * p] : [Xe, (i - nSel) * p];
      for (let t = 0; t < idx.length; t++) {
        const c = col[idx[t]];
        if (c >= 0) M[o + c] = val[t];
      }
    }
    selIdx.length = 0;
    selVal.length = 0;
    rep.time("hvg");

    // baseline representation
    let base: Float32Array;
    let baseD: number;
    let baseExtra: Float32Array;
    let explained: number[] | undefined;
    if (usePca) {
      rep.stage(`PCA of ${nSel} × ${p} HVG expression`);
      const pc = pca(X, nSel, p, opts.nPcs ?? 50, { seed });
      base = pc.scores;
      baseD = pc.nComponents;
      explained = pc.explainedVarianceRatio;
      baseExtra = projectPca(pc, Xe, nExtra);
    } else {
      base = X;
      baseD = p;
      baseExtra = Xe;
    }
    rep.time("pca");
    rep.stage("Spearman ranks");
    const { ranks, constantRows } = rankStandardize(X, nSel, p);
    rep.time("ranks");

    const labels = sel.labels;
    const batches = allBatches ? Array.from(sel.rows, (r) => allBatches[r]) : undefined;
    // xe: the rows of the probe's held-out cells outside the selection
    const reps: { id: string; name: string; x: Float32Array; xe: Float32Array; d: number }[] = [
      { id: "hvg", name: usePca ? `HVG + PCA${baseD}` : "HVG", x: base, xe: baseExtra, d: baseD },
    ];
    for (const e of embs) {
      const d = e.e.dim;
      const x = new Float32Array(nSel * d);
      for (let i = 0; i < nSel; i++) x.set(e.e.data.subarray(e.rows[i] * d, e.rows[i] * d + d), i * d);
      const xe = new Float32Array(nExtra * d);
      for (let i = 0; i < nExtra; i++) xe.set(e.e.data.subarray(e.probeRows[i] * d, e.probeRows[i] * d + d), i * d);
      reps.push({ id: sanitize(e.name), name: e.name, x, xe, d });
    }

    const tmp = tempDirFor(opts.output, "assess");
    const threads = opts.threads !== undefined ? checkThreadCount(opts.threads, "--threads") : defaultThreads();
    let runner: AssessRunner | undefined;
    try {
      runner = threads > 1 ? await AssessPool.start(threads, backend.name as BackendChoice) : new InlineRunner();
      const run = runner;
      const where = run.size > 1 ? ` in ${run.size} worker threads` : "";
      fs.mkdirSync(path.join(tmp, "figures"));
      const figures: { name: string; title: string; svg: string }[] = [];
      const metrics: RepresentationMetrics[] = [];
      const umap5: Float32Array[] = [];
      const umapSeedBase = seed;
      const subsample = (() => {
        const maxPts = 8000;
        if (nSel <= maxPts) return Array.from({ length: nSel }, (_, i) => i);
        const step = nSel / maxPts;
        return Array.from({ length: maxPts }, (_, i) => Math.floor(i * step));
      })();
      // 1. exact kNN graphs (rows split over the worker threads); 2. UMAP layouts in the workers while
      // the main thread computes the metrics; 3. figures; 4. all pairs (row types over the workers).
      // With threads = 1 every job runs here in the same order. Every job is deterministic, so
      // results do not depend on threads.
      const subRows = (R: (typeof reps)[number]) => {
        const xs = new Float32Array(subsample.length * R.d);
        subsample.forEach((r, i) => xs.set(R.x.subarray(r * R.d, r * R.d + R.d), i * R.d));
        return xs;
      };
      const kSub = Math.min(k, subsample.length - 1);
      rep.stage(`exact ${k}-NN graphs of ${reps.length} representation(s) (${nSel} cells)${where}`);
      // the 2-D UMAP is only for the scatter figure: computed on the (≤ 8,000) plotted cells
      const graphs: { g: KnnGraph; g2: KnnGraph }[] = await Promise.all(
        reps.map(async (R) => {
          const [g, g2] = await Promise.all([run.knn(R.x, nSel, R.d, k), subsample.length !== nSel ? run.knn(subRows(R), subsample.length, R.d, kSub) : undefined]);
          return { g, g2: g2 ?? g };
        }),
      );
      rep.time("knn");
      // the long 5-D layouts first (the workers take jobs in order), then the 2-D figure layouts
      const umapJobs = [
        ...reps.map((_, ri) => ({ dim: 5, knn: graphs[ri].g, seed: umapSeedBase + ri })),
        ...reps.map((_, ri) => ({ dim: 2, knn: graphs[ri].g2, seed: umapSeedBase + 100 + ri })),
      ];
      rep.stage(`UMAP 5-D and 2-D (figure) of ${reps.length} representation(s)${where}`);
      const umapResults = Promise.all(umapJobs.map((j) => run.umap(j.knn, { nComponents: j.dim, nNeighbors: k, seed: j.seed, nEpochs: opts.umapEpochs })));
      umapResults.catch(() => {}); // awaited below
      rep.time("umap");
      for (let ri = 0; ri < reps.length; ri++) {
        const R = reps[ri];
        const g = graphs[ri].g;
        rep.stage(`${R.name}: metrics (kNN accuracy, ASW, k-means NMI/ARI${batches ? ", batch ASW, graph connectivity" : ""})`);
        const acc = knnAccuracy(R.x, nSel, R.d, labels, { k, knn: g });
        const asw = silhouetteScore(R.x, nSel, R.d, labels);
        const km = kmeansClusters(R.x, nSel, R.d, sel.kept.length, { seed, restarts: opts.kmeansRestarts ?? 3 });
        const m: RepresentationMetrics = {
          id: R.id,
          name: R.name,
          dim: R.d,
          knnAccuracy: acc,
          aswRaw: asw.raw,
          aswScaled: asw.scaled,
          kmeansNmi: nmi(km.clusters, labels),
          kmeansAri: ari(km.clusters, labels),
          graphConnectivity: graphConnectivity(g, labels).score,
        };
        if (batches) m.batchAsw = batchAsw(R.x, nSel, R.d, labels, batches).score;
        const xp = new Float32Array((nSel + nExtra) * R.d);
        xp.set(R.x);
        xp.set(R.xe, nSel * R.d);
        const pr = linearProbe(xp, nSel + nExtra, R.d, [...labels, ...probe.extraLabels], probe.isTest);
        m.probeAccuracy = pr.accuracy;
        m.probeMacroF1 = pr.macroF1;
        metrics.push(m);
        rep.time("metrics");
      }
      rep.stage("waiting for the UMAP layouts");
      const layouts = await umapResults;
      rep.time("umap");
      for (let ri = 0; ri < reps.length; ri++) {
        const R = reps[ri];
        umap5.push(layouts[ri]);
        const u2 = layouts[reps.length + ri];
        const pts = subsample.map((i, t) => ({ x: u2[t * 2], y: u2[t * 2 + 1], c: labels[i] }));
        figures.push({ name: `umap_${R.id}_celltype`, title: `UMAP of ${R.name}, by cell type`, svg: await renderFigure(scatterSpec(`UMAP of ${R.name} — cell type`, pts, labelKey), path.join(tmp, "figures"), `umap_${R.id}_celltype`) });
        if (batches) {
          const pb = subsample.map((i, t) => ({ x: u2[t * 2], y: u2[t * 2 + 1], c: batches[i] }));
          figures.push({ name: `umap_${R.id}_batch`, title: `UMAP of ${R.name}, by batch`, svg: await renderFigure(scatterSpec(`UMAP of ${R.name} — batch`, pb, opts.batch!), path.join(tmp, "figures"), `umap_${R.id}_batch`) });
        }
        rep.time("figures");
      }

      // pairwise measures
      const specs: MeasureSpec[] = [
        { kind: "euclidean", id: "umap_hvg", label: `UMAP-5 of ${reps[0].name}`, x: umap5[0], n: nSel, d: 5 },
        { kind: "spearman", id: "spearman", label: "Spearman distance 1 − ρ (HVG)", x: ranks, n: nSel, d: p },
        { kind: "euclidean", id: "space_hvg", label: `${reps[0].name} space`, x: base, n: nSel, d: baseD },
      ];
      for (let ri = 1; ri < reps.length; ri++) {
        specs.push({ kind: "euclidean", id: `umap_${reps[ri].id}`, label: `UMAP-5 of ${reps[ri].name}`, x: umap5[ri], n: nSel, d: 5 });
        specs.push({ kind: "euclidean", id: `space_${reps[ri].id}`, label: `${reps[ri].name} space (${reps[ri].d}-d)`, x: reps[ri].x, n: nSel, d: reps[ri].d });
      }
      const joints: [string, string][] = [["umap_hvg", "spearman"]];
      for (let ri = 1; ri < reps.length; ri++) joints.push(["umap_hvg", `umap_${reps[ri].id}`]);
      const blocks: TypeBlock[] = sel.kept.map((t) => ({ type: t.type, offset: t.offset, size: t.nSelected }));
      rep.stage(`all ${((nSel * (nSel - 1)) / 2).toExponential(2)} cell pairs × ${specs.length} measures${where}`);
      rep.bar0((blocks.length * (blocks.length + 1)) / 2, "type pairs");
      const scan = await run.scanPairs(blocks, specs, joints, { batches, onBlock: (d) => rep.tick(d) });
      const measures = scan.summaries;
      rep.time("pairs");

      rep.stage("figures and report");
      const summaries: MeasureSummary[] = scan.summaries.map((s) => {
        const w = [...s.within.values()];
        const b = [...s.between.values()];
        // per type: is its within median below every between median involving it?
        let sep = 0;
        for (const t of s.within.keys()) {
          let minB = Infinity;
          for (const [key, v] of s.between) {
            const [a, c] = key.split("|");
            if (a === t || c === t) minB = Math.min(minB, v);
          }
          if (s.within.get(t)! < minB) sep++;
        }
        const mw = median(w);
        const mb = median(b);
        const out: MeasureSummary = {
          id: s.id,
          label: s.label,
          rankBased: s.id === "spearman",
          medianWithin: mw,
          medianBetween: mb,
          ratio: mw / mb,
          aucTypePairs: aucLess(w, b),
          aucPairs: histogramAuc(s.histWithin, s.histBetween),
          typesSeparated: sep / s.within.size,
          withinAllBelowBetween: Math.max(...w) < Math.min(...b),
          within: Object.fromEntries(s.within),
          between: Object.fromEntries(s.between),
        };
        if (s.withinSameBatch && s.withinCrossBatch) {
          const same: number[] = [];
          const cross: number[] = [];
          for (const t of s.within.keys()) {
            const a = s.withinSameBatch.get(t);
            const c = s.withinCrossBatch.get(t);
            if (a !== undefined && c !== undefined && Number.isFinite(a) && Number.isFinite(c)) {
              same.push(a);
              cross.push(c);
            }
          }
          if (same.length) {
            out.batch = {
              typesWithSeveralBatches: same.length,
              medianWithinSameBatch: median(same),
              medianWithinCrossBatch: median(cross),
              // how much of the between-type gap a batch change costs; undefined when types are not
              // apart (between ≤ within): a ratio to a gap that does not exist means nothing
              ...(mb > mw ? { batchGapOverTypeGap: (median(cross) - median(same)) / (mb - mw) } : {}),
            };
          }
        }
        return out;
      });
      const fdir = path.join(tmp, "figures");
      const wbRows = scan.summaries.flatMap((s) => [
        ...[...s.within.values()].map((value) => ({ measure: s.label, kind: "within" as const, value })),
        ...[...s.between.values()].map((value) => ({ measure: s.label, kind: "between" as const, value })),
      ]);
      figures.unshift({ name: "within_between", title: "Within vs between medians per measure", svg: await renderFigure(withinBetweenSpec(wbRows), fdir, "within_between") });
      for (const j of scan.joints) {
        const lx = measures.find((m) => m.id === j.x)!.label;
        const ly = measures.find((m) => m.id === j.y)!.label;
        const name = `joint_${j.x}_vs_${j.y}`;
        figures.push({ name, title: `${lx} vs ${ly}`, svg: await renderFigure(jointSpec(`${ly} vs ${lx}`, lx, ly, j.within, j.between), fdir, name) });
      }
      const zeroMin = Math.floor(Math.min(...zeroFracAll) * 50) / 50;
      const sa = new Histogram1D(zeroMin, 1, 50);
      const ss = new Histogram1D(zeroMin, 1, 50);
      zeroFracAll.forEach((z, i) => {
        sa.add(z);
        if (position[i] >= 0) ss.add(z);
      });
      figures.push({ name: "sparsity", title: "Sparsity", svg: await renderFigure(sparsitySpec(sa, ss), fdir, "sparsity") });
      rep.time("figures");

      const result: AssessmentResult = {
        input: opts.input,
        nCells: src.nCells,
        nGenes: src.nGenes,
        label: labelKey,
        batch: opts.batch,
        probe: { how: probe.how, nTrain: probe.isTest.filter((t) => !t).length, nTest: probe.isTest.filter(Boolean).length, model: "multinomial logistic regression, L2 with C = 1, standardised features (sklearn LogisticRegression defaults), L-BFGS" },
        settings: { minCells, perType, nHvg: p, nHvgRequested: nHvgWanted, pca: usePca, nPcs: usePca ? baseD : undefined, seed, k, backend: backend.name, umap: "umap-learn algorithm (typed-array port), exact kNN, n_neighbors=k, min_dist=0.1, random init" },
        kept: sel.kept.map(({ type, nCells, nSelected }) => ({ type, nCells, nSelected })),
        dropped: sel.dropped.map(({ type, nCells }) => ({ type, nCells })),
        nSelected: nSel,
        ...(leftOut ? { cellsLeftOut: leftOut } : {}),
        constantRankCells: constantRows,
        explainedVariance: explained ? explained.reduce((a, v) => a + v, 0) : undefined,
        sparsity: {
          medianZeroFractionAll: median(zeroFracAll),
          medianZeroFractionSelected: median(zeroFracAll.filter((_, i) => position[i] >= 0)),
        },
        embeddings: embs.map((e) => ({ name: e.name, file: e.file, dim: e.e.dim, cellsInFile: e.e.cellIds.length, extraCells: e.extra, meta: e.e.meta })),
        measures: summaries,
        metrics,
        timings: rep.timings,
      };
      writeReport(tmp, result, figures);
      commitDir(tmp, opts.output, opts.force ?? false, { command: "assess" });
      rep.stage(`done: ${opts.output}`);
      return result;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      await runner?.close();
    }
  } finally {
    rep.stop();
    if (!opts.source) src.close();
  }
}
