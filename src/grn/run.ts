/**
 * The `cellfm grn` stage: cell-type-specific gene networks from a checkpoint's attention (scPRINT,
 * `scprint/tasks/grn.py: GNInfer`; reference-spec §1d), scored against a ground truth (BEELINE EPR
 * and AUPRC, BenGRN EPR) next to baselines computed on the same cells and genes (random,
 * co-expression, optionally the same architecture untrained).
 *
 * Output folder (written under a temporary name, renamed when complete):
 *   grn.json                 settings, gene mapping, scores of every network and baseline
 *   scores.tsv               one row per cell type and method
 *   <cell type>/edges.tsv    regulator, target, weight (nonzero, sorted by weight descending)
 *   <cell type>/edges.arrow  the same with Ensembl IDs
 *   <cell type>/genes.tsv    the gene list (index, Ensembl ID, symbol, token, cells whose input held it)
 *   <cell type>/matrix.tsv   the dense matrix, for gene lists up to `denseMax` genes
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import cliProgress from "cli-progress";
import { type BackendChoice, initBackend } from "../backend.js";
import { availableCores, checkThreadCount } from "../threads.js";
import { openCounts } from "../data/open.js";
import type { CountMatrixSource } from "../data/types.js";
import { assertWritable, commitDir, tempDirFor, writeFileAtomic } from "../io.js";
import { cellfmVersion, readCheckpoint } from "../model/checkpoint.js";
import { buildModel } from "../model/factory.js";
import { contextGeneMask } from "../model/value-model.js";
import { loadGeneformerDictionaries } from "../tokenize/dictionaries.js";
import { planGenes } from "../tokenize/geneformer.js";
import { attentionFinish, type AttentionModel, attentionModelOf, type AttentionSums, type CellInput, qkFinish, qkHeadNetwork, type QkSums } from "./attention.js";
import { type ModelSource, sumParallel } from "./parallel.js";
import { cellInputs, type GrnTokenization, tokenizationOf, tokenizeRows } from "./inputs.js";
import { coexpressionNetwork, randomNetwork } from "./baselines.js";
import { chooseCells, chooseGenes, expressionMatrix, obsStrings, parseGeneSpec, readCells, varGenes } from "./data.js";
import { headWeights, parseHeads, type HeadSelection, type HeadSpec, scoreOnUniverse, selectHeads } from "./heads.js";
import { assertFinite, filterNetwork, type NetworkFilter, parseFilter, scoreNetwork, type ScoringPlan, scoringPlan, summarizeScores, writeDenseMatrix, writeEdgeFiles } from "./network.js";
import { indexTruth, readTruth, type TruthNetwork } from "./truth.js";
import { withOutputLocks } from "../lock.js";

/** Tokens above which extraction uses every core by default (below, starting workers costs more than it saves). */
export const AUTO_THREADS_MIN_TOKENS = 200_000;

/** A gene in the input of fewer than this fraction of a cell type's cells is "rarely" seen (marked in genes.tsv, counted in scores.tsv). */
export const RARE_FRACTION = 0.05;

/**
 * Which list genes never, or rarely (in under {@link RARE_FRACTION} of the cells), entered the cells' input.
 * @param geneCells per list gene, the number of cells whose input held it.
 * @param nCells the cells of the network.
 */
export function inputCoverage(geneCells: Int32Array, nCells: number, names: string[]): { never: string[]; rarely: string[] } {
  const never: string[] = [];
  const rarely: string[] = [];
  for (let j = 0; j < geneCells.length; j++) {
    if (geneCells[j] === 0) never.push(names[j]);
    else if (geneCells[j] < RARE_FRACTION * nCells) rarely.push(names[j]);
  }
  return { never, rarely };
}

/** Extraction method: (a) "qk" = mean Q and K per gene then softmax; (b) "attention" = mean of per-cell attention. */
export type GrnMethod = "qk" | "attention";

/** Options of {@link runGrn} (mirrors `cellfm grn`). */
export interface GrnRunOptions {
  /** `.h5ad` file or 10x folder of raw counts. */
  input: string;
  /** `.h5ad` input: read the counts from `layers/<layer>` (scanpy files: `counts`). */
  layer?: string;
  /** `.h5ad` input: read the counts from `raw/X`. */
  useRaw?: boolean;
  /** checkpoint folder; without it only the baselines are computed. */
  checkpoint?: string;
  /** output folder. */
  output: string;
  /** obs column with cell types (default "cell_type"). */
  label?: string;
  /** cell types, or "all" (one network per type). */
  cellTypes: string[] | "all";
  /** cap on cells per network, seeded choice (default 1,000). */
  maxCells?: number;
  /** fewest cells a network may use (default 20). */
  minCells?: number;
  /** gene list: `hvg:N`, `file:genes.txt`, `expressed:F` (default `hvg:2000`). */
  genes?: string;
  /** default "qk". */
  method?: GrnMethod;
  /** `mean` (default), `max`, `select`, or `layer:head,...`. */
  heads?: string;
  /** `none` (default), `thresh`, `top-k:K`. */
  filter?: string;
  /** keep only rows of regulators named in the truth file. */
  tfOnly?: boolean;
  /** ground-truth TSV (regulator, target). */
  truth?: string;
  /** also score the same architecture with untrained weights (seed of the checkpoint's training). */
  untrained?: boolean;
  /** random and co-expression baselines (default true). */
  baselines?: boolean;
  /** seed of cell choice, random baseline and head-selection split (default 0). */
  seed?: number;
  /** edges written to edges.tsv/.arrow: the largest this many (default 100,000; 0 = all). */
  maxEdges?: number;
  /** write matrix.tsv for gene lists of at most this many genes (default 500). */
  denseMax?: number;
  /** binned checkpoints: seed of the tie spreading the training data was binned with (`cellfm tokenize --seed`, default 0). */
  binningSeed?: number;
  /** raw-count input: var column with gene IDs. */
  idColumn?: string;
  backend?: BackendChoice;
  /**
   * threads for extraction (main thread + workers − 1, each with its own model copy); default: every
   * available core when the cells hold at least {@link AUTO_THREADS_MIN_TOKENS} tokens, else 1.
   */
  workers?: number;
  maxTokensPerBatch?: number;
  force?: boolean;
  quiet?: boolean;
  log?: (line: string) => void;
}

/** One row of the scores table. */
export interface ScoreRow {
  cell_type: string;
  method: string;
  [metric: string]: string | number | null;
}

/** What {@link runGrn} returns. */
export interface GrnRunSummary {
  output: string;
  rows: ScoreRow[];
  networks: Record<string, unknown>[];
  seconds: number;
}

function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9_.+-]+/g, "_");
}

/** Progress of a long step: a bar with ETA on a TTY, else a line with ETA at every ~10 %. */
function progress(title: string, total: number, quiet: boolean, log: (l: string) => void): { update(n: number): void; stop(): void } {
  if (quiet) return { update() {}, stop() {} };
  const t0 = Date.now();
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${title} [{bar}] {percentage}% | {value}/{total} cells | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return { update: (n) => bar.update(n), stop: () => bar.stop() };
  }
  let next = 0.1;
  return {
    update: (n) => {
      if (n / total + 1e-9 < next && n < total) return;
      next = Math.floor((n / total) * 10) / 10 + 0.1;
      const el = (Date.now() - t0) / 1000;
      log(`${title}: ${n}/${total} cells, ${el.toFixed(1)} s, ETA ${((el / n) * (total - n)).toFixed(1)} s`);
    },
    stop() {},
  };
}

/** A model prepared for extraction on one gene list. */
interface ModelForGrn {
  name: string;
  am: AttentionModel;
  /** how a worker thread builds the same model. */
  source: ModelSource;
  dispose(): void;
}

interface NetworkResult {
  network: Float32Array;
  selection?: HeadSelection;
  /** with selection: the mean over all heads of the same extraction (for comparison on the same half). */
  meanNetwork?: Float32Array;
  /** cells whose input held each gene (method a) or null. */
  geneCells?: Int32Array;
}

/** Weighted sum of per-head networks (weights `[layers * heads]`, zeros skipped). */
function weightedHeads(head: (l: number, h: number) => Float32Array, w: ArrayLike<number>, NL: number, NH: number, nn: number): Float32Array {
  const g = new Float32Array(nn);
  for (let l = 0; l < NL; l++) {
    for (let h = 0; h < NH; h++) {
      const wt = w[l * NH + h];
      if (wt === 0) continue;
      const a = head(l, h);
      for (let i = 0; i < nn; i++) g[i] += wt * a[i];
    }
  }
  return g;
}

/**
 * Extract and aggregate one model's network: one pass of the cells through the model (split over
 * `threads` threads), then the head aggregation; with head selection also the mean over all heads
 * from the same pass.
 */
async function extractNetwork(
  m: ModelForGrn,
  inputs: { cells: CellInput[]; ids: Int32Array[]; values?: Float32Array[]; padId: number },
  n: number,
  method: GrnMethod,
  heads: HeadSpec,
  plan: ScoringPlan | null,
  seed: number,
  opts: { maxTokensPerBatch?: number; threads: number; backend: BackendChoice; onProgress?: (d: number, t: number) => void },
): Promise<NetworkResult> {
  const NL = m.am.numLayers, NH = m.am.numHeads, nn = n * n;
  const job = { n, cells: inputs.cells, ids: inputs.ids, values: inputs.values, padId: inputs.padId, maxTokensPerBatch: opts.maxTokensPerBatch };
  const perHead = heads.kind === "max" || heads.kind === "select";
  let head: (l: number, h: number) => Float32Array;
  let geneCells: Int32Array | undefined;
  if (method === "qk") {
    const qk = qkFinish((await sumParallel(m.am, m.source, { ...job, job: { method: "qk" } }, opts.threads, opts.backend, opts.onProgress)) as QkSums, NH);
    geneCells = qk.count;
    // head selection reads every head twice (fit, then the weighted sum): keep them when they fit in 1 GiB
    const cache = perHead && NL * NH * nn * 4 <= 2 ** 30 ? new Map<number, Float32Array>() : undefined;
    head = (l, h) => {
      const hit = cache?.get(l * NH + h);
      if (hit) return hit;
      const a = qkHeadNetwork(qk, l, h);
      cache?.set(l * NH + h, a);
      return a;
    };
  } else {
    const bytes = NL * NH * nn * 8 * (perHead ? 1 : 0);
    if (perHead && (bytes * opts.threads) / 2 > 3 * 2 ** 30) {
      throw new Error(`--method attention with --heads ${heads.kind} keeps ${NL * NH} matrices of ${n} x ${n} per thread (${(bytes / 2 ** 30).toFixed(1)} GiB); use --method qk, fewer genes or --workers 1`);
    }
    const sums = (await sumParallel(
      m.am,
      m.source,
      { ...job, job: { method: "attention", perHead, headWeights: perHead ? undefined : headWeights(heads, NL, NH) } },
      opts.threads,
      opts.backend,
      opts.onProgress,
    )) as AttentionSums;
    const res = attentionFinish(sums, NL, NH);
    if (!perHead) return { network: res.networks[0], geneCells };
    head = (l, h) => res.networks[l * NH + h];
  }
  if (heads.kind === "select") {
    if (!plan) throw new Error("--heads select needs --truth");
    const sel = selectHeads(head, NL, NH, plan.all, seed);
    const network = weightedHeads(head, sel.weights, NL, NH, nn);
    const meanNetwork = weightedHeads(head, headWeights({ kind: "mean" }, NL, NH), NL, NH, nn);
    return { network, selection: sel, meanNetwork, geneCells };
  }
  if (heads.kind === "max") {
    const g = new Float32Array(nn);
    for (let l = 0; l < NL; l++) for (let h = 0; h < NH; h++) {
      const a = head(l, h);
      for (let i = 0; i < nn; i++) if (a[i] > g[i]) g[i] = a[i];
    }
    return { network: g, geneCells };
  }
  return { network: weightedHeads(head, headWeights(heads, NL, NH), NL, NH, nn), geneCells };
}

/**
 * Build, score and write the gene networks.
 * @throws Error (nothing written) when the output exists without `force`; the input, checkpoint or
 *   truth file is missing; the label column is absent; a requested cell type is absent or has fewer
 *   than `minCells` cells; under half of a gene list is in the vocabulary; the truth has no edge
 *   among the chosen genes; the checkpoint has no attention weights; or an option is invalid.
 */
export async function runGrn(o: GrnRunOptions): Promise<GrnRunSummary> {
  return withOutputLocks(() => runGrnLocked(o));
}

async function runGrnLocked(o: GrnRunOptions): Promise<GrnRunSummary> {
  const t0 = Date.now();
  const log = o.log ?? ((l: string) => (o.quiet ? undefined : process.stderr.write(l + "\n")));
  const label = o.label ?? "cell_type";
  const seed = o.seed ?? 0;
  const method: GrnMethod = o.method ?? "qk";
  if (method !== "qk" && method !== "attention") throw new Error(`--method must be qk or attention (got ${method})`);
  const geneSpec = parseGeneSpec(o.genes ?? "hvg:2000");
  const filter: NetworkFilter = parseFilter(o.filter ?? "none");
  const minCells = o.minCells ?? 20;
  const maxCells = o.maxCells ?? 1000;
  if (!Number.isInteger(minCells) || minCells < 2) throw new Error(`--min-cells must be an integer >= 2 (got ${minCells})`);
  if (!Number.isInteger(maxCells) || maxCells < minCells) throw new Error(`--max-cells must be an integer >= --min-cells (got ${maxCells})`);
  if (o.tfOnly && !o.truth) throw new Error("--tf-only needs --truth (the regulators are those of the truth file)");
  if (o.untrained && !o.checkpoint) throw new Error("--untrained needs --checkpoint");
  if (o.workers !== undefined) checkThreadCount(o.workers, "--workers", 1);
  assertWritable(o.output, o.force ?? false, {
    command: "grn",
    kind: "dir",
    lock: "grn",
    inputs: [
      { path: o.input, label: "--input" },
      ...(o.checkpoint ? [{ path: o.checkpoint, label: "--checkpoint" }] : []),
      ...(o.truth ? [{ path: o.truth, label: "--truth" }] : []),
    ],
  });
  if (!fs.existsSync(o.input)) throw new Error(`input ${o.input} not found`);
  if (o.checkpoint && !fs.existsSync(o.checkpoint)) throw new Error(`checkpoint folder ${o.checkpoint} not found`);
  const truth: TruthNetwork | null = o.truth ? readTruth(o.truth) : null;
  const backend = await initBackend(o.backend ?? "auto");
  log(`backend: ${backend.name}`);

  const ck = o.checkpoint ? readCheckpoint(o.checkpoint) : null;
  const models: ModelForGrn[] = [];
  let tokenization: GrnTokenization | undefined;
  try {
    if (ck) {
      tokenization = tokenizationOf(ck, o.binningSeed ?? 0);
      models.push({ name: "attention", am: attentionModelOf(ck.model), source: { checkpoint: path.resolve(o.checkpoint!) }, dispose: () => ck.model.dispose() });
      if (o.untrained) {
        const ts = ck.trainerState as { training?: { seed?: number } } | undefined;
        const spec = { encoding: ck.cellfm.encoding, objective: ck.cellfm.objective, ...(ck.cellfm.head ? { head: ck.cellfm.head } : {}) };
        const useed = Number(ts?.training?.seed ?? 0);
        const u = buildModel(ck.config, spec, { seed: useed });
        models.push({ name: "untrained", am: attentionModelOf(u), source: { config: ck.config, spec, seed: useed }, dispose: () => u.dispose() });
      }
    }
    const heads = parseHeads(o.heads ?? "mean", ck?.config.num_hidden_layers, ck?.config.num_attention_heads);
    if (heads.kind === "select" && !truth) throw new Error("--heads select needs --truth (heads are fitted to known edges)");

    const src = await openCounts(o.input, { layer: o.layer, useRaw: o.useRaw });
    const tmp = tempDirFor(o.output, "grn");
    try {
      if (!(label in src.obs.columns)) {
        throw new Error(`${o.input}: obs has no column "${label}" (--label); obs columns: ${Object.keys(src.obs.columns).join(", ") || "none"}`);
      }
      const labels = obsStrings(src.obs.columns[label]);
      const { groups, skipped } = chooseCells(labels, o.cellTypes, { maxCells, minCells, seed, labelName: label });
      for (const s of skipped) log(`skipping cell type "${s.type}": ${s.nCells} cells < --min-cells ${minCells}`);
      const vg = varGenes(src, o.idColumn);
      let colToken: Int32Array | null = null;
      let vocabSize = 0;
      if (ck) {
        const dict = loadGeneformerDictionaries(ck.cellfm.model_version === "V2" ? "V2" : "V1");
        colToken = planGenes(src.var, dict, { idColumn: o.idColumn, file: src.path, minKnownFraction: 0 }).colToken;
        vocabSize = ck.config.vocab_size;
      }
      const allRows = Int32Array.from(new Set(groups.flatMap((g) => Array.from(g.rows)))).sort();
      const tokens = ck && tokenization ? tokenizeRows(src, allRows, ck, tokenization, o.idColumn, contextGeneMask(ck.model.embeddings)) : new Map();
      const rows: ScoreRow[] = [];
      const networks: Record<string, unknown>[] = [];
      const failures: { cell_type: string; error: string }[] = [];
      for (const grp of groups) {
        const tg = Date.now();
        const what = `cell type "${grp.type}"`;
        const dir = path.join(tmp, sanitize(grp.type));
        try {
        const cellsCsr = readCells(src, grp.rows);
        const genes = chooseGenes(geneSpec, cellsCsr, vg, colToken, what);
        const n = genes.cols.length;
        const names = genes.symbols.map((s, j) => s || genes.ids[j] || `gene${j}`);
        const unmapped = genes.notInVocabulary.length + genes.notInInput.length;
        log(
          `${what}: ${grp.rows.length} of ${grp.nOfType} cells; ${n} of ${genes.requested} genes used` +
            (unmapped ? `; ${unmapped} not in the ${ck ? "model's vocabulary" : "input"}: ${[...genes.notInInput, ...genes.notInVocabulary].slice(0, 10).join(", ")}${unmapped > 10 ? ", …" : ""}` : "") +
            (genes.duplicates.length ? `; ${genes.duplicates.length} duplicates of another column's gene dropped` : ""),
        );
        const it = truth ? indexTruth(truth, genes.symbols) : null;
        const plan = it ? scoringPlan(it, truth!.file) : null;
        const tfRows = o.tfOnly && it ? (() => {
          const r = new Uint8Array(n);
          for (const g of it.regulatorsInFile) r[g] = 1;
          return r;
        })() : undefined;
        const out: Record<string, unknown> = {
          cell_type: grp.type,
          folder: sanitize(grp.type),
          n_cells_of_type: grp.nOfType,
          n_cells: grp.rows.length,
          genes: {
            requested: genes.requested,
            used: n,
            not_in_vocabulary: genes.notInVocabulary,
            not_in_input: genes.notInInput,
            duplicates_dropped: genes.duplicates,
          },
          truth: it ? { edges_among_genes: it.edges.length, genes_named: it.genesInFile.length, regulators: it.regulatorsInFile.length } : null,
          scores: {} as Record<string, unknown>,
        };
        const scores = out.scores as Record<string, unknown>;
        const score = (name: string, g: Float32Array, sel?: HeadSelection) => {
          assertFinite(g, `${what}, ${name}`);
          filterNetwork(g, n, filter, tfRows);
          if (!plan) return;
          if (sel) {
            // selected heads: scored only on the half of the pairs the fit never saw
            const s = scoreOnUniverse(g, n, sel.scoringUniverse);
            scores[name] = { epr: s.epr, auprc: s.auprc, auprc_ratio: s.auprcRatio, scored_on: "held-out half of the universe", head_weights: Array.from(sel.weights), heads_used: sel.used, fit: sel.fit, score: sel.score };
            rows.push({ cell_type: grp.type, method: name, epr: s.epr, auprc: s.auprc, auprc_ratio: s.auprcRatio, epr_tf: null, bengrn_epr: null });
            return;
          }
          const s = summarizeScores(scoreNetwork(g, plan));
          scores[name] = s;
          rows.push({ cell_type: grp.type, method: name, epr: s.epr, auprc: s.auprc, auprc_ratio: s.auprc_ratio, epr_tf: s.epr_tf, bengrn_epr: s.bengrn_epr });
        };
        fs.mkdirSync(dir, { recursive: true });
        let geneCells: Int32Array | undefined;
        let mainNetwork: Float32Array | undefined;
        if (models.length) {
          const inp = cellInputs(tokens, grp.rows, genes.tokens, {
            vocabSize,
            padId: ck!.config.pad_token_id,
            encoding: tokenization!.encoding,
            maxLength: ck!.config.max_position_embeddings,
          });
          const cells = inp.cells;
          out.n_cells_tokenized = cells.length;
          const totalTokens = cells.reduce((t, c) => t + c.length, 0);
          const threads = o.workers !== undefined ? o.workers : backend.name !== "tensorflow" && totalTokens >= AUTO_THREADS_MIN_TOKENS ? availableCores() : 1;
          out.threads = threads;
          for (const m of models) {
            const bar = progress(`${grp.type} ${m.name}`, cells.length, o.quiet ?? false, log);
            const r = await extractNetwork(m, { ...inp, padId: ck!.config.pad_token_id }, n, method, heads, plan, seed, {
              maxTokensPerBatch: o.maxTokensPerBatch,
              threads,
              backend: backend.name as BackendChoice,
              onProgress: (d) => bar.update(d),
            });
            bar.stop();
            geneCells ??= r.geneCells;
            score(m.name, r.network, r.selection);
            if (r.selection && plan && r.meanNetwork) {
              // the mean over all heads on the same held-out half, for comparison
              const mean = { network: r.meanNetwork };
              filterNetwork(mean.network, n, filter, tfRows);
              const s = scoreOnUniverse(mean.network, n, r.selection.scoringUniverse);
              scores[`${m.name}_mean_heads_same_half`] = { epr: s.epr, auprc: s.auprc, auprc_ratio: s.auprcRatio };
              rows.push({ cell_type: grp.type, method: `${m.name} (mean heads, same half)`, epr: s.epr, auprc: s.auprc, auprc_ratio: s.auprcRatio, epr_tf: null, bengrn_epr: null });
            }
            if (m.name === "attention") mainNetwork = r.network;
          }
        }
        if (o.baselines ?? true) {
          const x = expressionMatrix(cellsCsr, genes);
          const co = coexpressionNetwork(x, grp.rows.length, n);
          score("coexpression", co.network);
          if (!mainNetwork) mainNetwork = co.network;
          score("random", randomNetwork(n, `${seed}:${grp.type}`));
        }
        if (mainNetwork) {
          out.method = models.length ? method : "coexpression";
          const w = writeEdgeFiles(dir, mainNetwork, names, genes.ids, o.maxEdges ?? 100000);
          out.n_edges_nonzero = w.nonzero;
          out.n_edges_written = w.written;
          if (n <= (o.denseMax ?? 500)) writeDenseMatrix(path.join(dir, "matrix.tsv"), mainNetwork, names);
        }
        const nIn = (out.n_cells_tokenized as number | undefined) ?? grp.rows.length;
        const gl = ["index\tensembl_id\tsymbol\ttoken\tcells_in_input\tin_input"];
        for (let j = 0; j < n; j++) {
          const c = geneCells ? geneCells[j] : undefined;
          const mark = c === undefined ? "" : c === 0 ? "never" : c < RARE_FRACTION * nIn ? "rarely" : "yes";
          gl.push(`${j}\t${genes.ids[j]}\t${genes.symbols[j]}\t${genes.tokens[j]}\t${c ?? ""}\t${mark}`);
        }
        writeFileAtomic(path.join(dir, "genes.tsv"), gl.join("\n") + "\n");
        const seen = geneCells ? inputCoverage(geneCells, nIn, names) : undefined;
        if (seen) {
          Object.assign(out.genes as Record<string, unknown>, { never_in_input: seen.never.length, rarely_in_input: seen.rarely.length, never_in_input_genes: seen.never, rarely_in_input_genes: seen.rarely });
          for (const r of rows) if (r.cell_type === grp.type) Object.assign(r, { n_genes: n, never_in_input: seen.never.length, rarely_in_input: seen.rarely.length });
          log(`  genes in the cells' input: ${n - seen.never.length} of ${n} (${seen.never.length} never, ${seen.rarely.length} in under ${RARE_FRACTION * 100} % of the cells)`);
          if (seen.never.length > n / 4) {
            log(
              `  warning: ${seen.never.length} of ${n} genes (${Math.round((100 * seen.never.length) / n)} %) never entered any ${grp.type} cell's input ` +
                `(${tokenization?.encoding === "rank" ? `a rank model reads each cell's top ${ck!.config.max_position_embeddings} genes` : "not expressed in these cells"}): ` +
                `their edges are not learned from these cells (marked in genes.tsv and scores.tsv): ${seen.never.slice(0, 8).join(", ")}${seen.never.length > 8 ? ", …" : ""}`,
            );
          }
        }
        out.seconds = (Date.now() - tg) / 1000;
        networks.push(out);
        const mine = rows.filter((r) => r.cell_type === grp.type);
        for (const r of mine) {
          const f = (v: unknown) => (typeof v === "number" ? v.toFixed(3) : "-");
          log(`  ${r.method}: EPR ${f(r.epr)}, AUPRC ${f(r.auprc)} (x${f(r.auprc_ratio)} random), EPR TF rows ${f(r.epr_tf)}, BenGRN EPR ${f(r.bengrn_epr)}`);
        }
        } catch (e) {
          // the other cell types go on; what finished is written, and the command fails at the end naming this one
          const msg = (e as Error).message ?? String(e);
          failures.push({ cell_type: grp.type, error: msg });
          for (let i = rows.length - 1; i >= 0; i--) if (rows[i].cell_type === grp.type) rows.splice(i, 1);
          fs.rmSync(dir, { recursive: true, force: true });
          log(`${what} failed: ${msg}`);
        }
      }
      const settings = {
        input: path.resolve(o.input),
        checkpoint: o.checkpoint ? path.resolve(o.checkpoint) : null,
        label,
        cell_types: o.cellTypes,
        max_cells: maxCells,
        min_cells: minCells,
        genes: o.genes ?? "hvg:2000",
        method,
        heads: o.heads ?? "mean",
        filter: o.filter ?? "none",
        tf_only: !!o.tfOnly,
        truth: o.truth ? path.resolve(o.truth) : null,
        untrained: !!o.untrained,
        seed,
        backend: backend.name,
        encoding: ck ? ck.cellfm.encoding : null,
        ...(tokenization?.encoding === "binned" ? { n_bins: tokenization.nBins, binning_seed: tokenization.binningSeed } : {}),
        input_context: !tokenization
          ? null
          : tokenization.encoding === "rank"
            ? "each cell's own input (its ranked genes, truncated to max_position_embeddings); list genes absent from a cell's input do not enter its contribution"
            : "each cell's expressed list genes with their values (a seeded uniform subset when more than max_position_embeddings), filled up to max_position_embeddings with a seeded subset of its other expressed genes; unexpressed genes never enter",
        scoring:
          "BEELINE EPR/AUPRC on the network restricted to the truth's genes (universe: ordered pairs without self-loops; _tf: rows of regulators); BenGRN EPR on the list genes named in the truth file",
      };
      const json = { settings, cellfm_version: cellfmVersion(), created: new Date().toISOString(), skipped_cell_types: skipped, failed_cell_types: failures, networks };
      writeFileAtomic(path.join(tmp, "grn.json"), JSON.stringify(json, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
      const cols = ["cell_type", "method", "epr", "auprc", "auprc_ratio", "epr_tf", "bengrn_epr", "n_genes", "never_in_input", "rarely_in_input"];
      writeFileAtomic(path.join(tmp, "scores.tsv"), [cols.join("\t"), ...rows.map((r) => cols.map((c) => r[c] ?? "").join("\t"))].join("\n") + "\n");
      if (networks.length === 0 && failures.length > 0) throw new Error(failures.map((x) => `cell type "${x.cell_type}": ${x.error}`).join("; "));
      commitDir(tmp, o.output, o.force ?? false, { command: "grn" });
      if (failures.length > 0) {
        throw new Error(
          `${failures.map((x) => `cell type "${x.cell_type}" failed: ${x.error}`).join("; ")} ` +
            `(the ${networks.length} finished cell type(s) are written to ${o.output}; grn.json lists the failure)`,
        );
      }
      return { output: o.output, rows, networks, seconds: (Date.now() - t0) / 1000 };
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    } finally {
      src.close();
    }
  } finally {
    for (const m of models) m.dispose();
    if (ck && !models.length) ck.model.dispose();
  }
}
