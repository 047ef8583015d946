/**
 * The comparison's report: `compare.json` (every number), `report.md` and a self-contained
 * `report.html`, and `figures/curves.{svg,png}` (held-out loss against training tokens, each run
 * relative to its own baseline). Measures are the assessment's (`cellfm assess`, per arm); each arm is
 * summarised over its seeds as mean ± sd, and a difference smaller than the seed spread (the larger
 * of the two sds) is read as no difference.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { TopLevelSpec } from "vega-lite";
import { renderFigure } from "../assess/figures.js";
import { htmlTable, mdTable, type AssessmentResult, type MeasureSummary, type RepresentationMetrics } from "../assess/report.js";
import { writeFileAtomic } from "../io.js";
import type { EvalResult } from "../train/loop.js";
import type { DenoiseBaselines } from "./bench.js";
import type { CompareConfig } from "./config.js";
import type { DenoiseScore } from "./denoise.js";

/** What one arm × seed measured (`<arm>/seed-<s>/done.json`). */
export interface ArmSeedResult {
  arm: string;
  seed: number;
  steps: number;
  /** real training tokens seen (≥ the budget, the first step that reached it). */
  tokens: number;
  eval: EvalResult;
  /** wall time of every training attempt of this arm × seed (a run resumed after a kill counts both parts, and the steps it redid). */
  train_seconds: number;
  /** training attempts when more than one (the run was stopped and resumed). */
  train_attempts?: number;
  /** tokens trained ÷ train_seconds. */
  tokens_per_s: number;
  /** denoising scores of the trained and the untrained model (count-predicting arms). */
  denoise?: { trained: DenoiseScore; untrained: DenoiseScore };
}

/** mean ± sd over seeds (sd: sample standard deviation, undefined for one seed). */
export interface Stat {
  mean: number;
  sd?: number;
  values: number[];
}

/** A column of the side-by-side table. */
export interface Column {
  id: string;
  label: string;
  higherBetter: boolean;
  /** the best value is the one closest to 0 (a signed gap), not the lowest. */
  nearZeroBetter?: boolean;
}

/** One row of the side-by-side table: an arm (trained or its untrained floor) or HVG + PCA. */
export interface Row {
  name: string;
  /** `input`: the arm's input ceiling (its context genes as a bag → PCA50, src/compare/ceiling.ts). */
  kind: "trained" | "untrained" | "input" | "baseline";
  arm?: string;
  encoding?: string;
  values: Record<string, Stat | undefined>;
}

/** `compare.json`. */
export interface CompareResult {
  config: string;
  output: string;
  columns?: Column[];
  rows?: Row[];
  arms: {
    name: string;
    encoding: string;
    objective: string;
    seeds: ArmSeedResult[];
    heldOutLoss?: Stat;
    baselineLoss?: Stat;
    tokens?: Stat;
    tokensPerSecond?: Stat;
    trainSeconds?: Stat;
    denoise?: { trained: Stat; untrained: Stat };
  }[];
  baseline?: Row;
  denoise?: DenoiseBaselines;
  reading: string[];
  wallSeconds?: number;
}

/** mean ± sd of values (sd undefined for fewer than 2). @throws Error on a non-finite value. */
export function stat(values: number[]): Stat {
  for (const v of values) if (!Number.isFinite(v)) throw new Error(`compare: a non-finite measurement (${v})`);
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  const sd = n > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : undefined;
  return { mean, sd, values };
}

/**
 * Read the difference of two summaries against the seed spread.
 * @returns "higher" / "lower" when |a − b| exceeds the larger sd (or no sd is known: one seed),
 *   else "same" (a difference smaller than the seed spread is no difference).
 */
export function differ(a: Stat, b: Stat): "higher" | "lower" | "same" {
  const spread = Math.max(a.sd ?? 0, b.sd ?? 0);
  const d = a.mean - b.mean;
  if (Math.abs(d) <= spread || d === 0) return "same";
  return d > 0 ? "higher" : "lower";
}

const f3 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "–" : Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(3));
const fmtStat = (s: Stat | undefined) => (s ? (s.sd !== undefined ? `${f3(s.mean)} ± ${f3(s.sd)}` : f3(s.mean)) : "–");

/** The columns of the side-by-side table (batch columns only with a batch key). */
export function columns(batch: boolean): Column[] {
  return [
    { id: "knn", label: "kNN accuracy", higherBetter: true },
    { id: "probe_acc", label: "linear probe accuracy (held out)", higherBetter: true },
    { id: "probe_f1", label: "linear probe macro-F1", higherBetter: true },
    { id: "asw", label: "ASW (scaled)", higherBetter: true },
    { id: "nmi", label: "k-means NMI", higherBetter: true },
    { id: "ari", label: "k-means ARI", higherBetter: true },
    { id: "ratio_umap", label: "within/between (UMAP-5)", higherBetter: false },
    { id: "ratio_space", label: "within/between (space)", higherBetter: false },
    { id: "auc_umap", label: "pair AUC (UMAP-5)", higherBetter: true },
    ...(batch
      ? [
          { id: "batch_asw", label: "batch ASW", higherBetter: true },
          { id: "graph_conn", label: "graph connectivity", higherBetter: true },
          // "–" where the types are not apart (no type gap to compare the batch gap with)
          { id: "batch_gap", label: "batch gap / type gap (UMAP-5)", higherBetter: false, nearZeroBetter: true },
        ]
      : []),
  ];
}

function valuesOf(m: RepresentationMetrics | undefined, umap: MeasureSummary | undefined, space: MeasureSummary | undefined): Record<string, number | undefined> {
  return {
    knn: m?.knnAccuracy,
    probe_acc: m?.probeAccuracy,
    probe_f1: m?.probeMacroF1,
    asw: m?.aswScaled,
    nmi: m?.kmeansNmi,
    ari: m?.kmeansAri,
    ratio_umap: umap?.ratio,
    ratio_space: space?.ratio,
    auc_umap: umap?.aucPairs,
    batch_asw: m?.batchAsw,
    graph_conn: m?.graphConnectivity,
    batch_gap: umap?.batch?.batchGapOverTypeGap,
  };
}

/** Values of one embedding (by its id in the assessment) or of the HVG baseline (id "hvg"). */
export function representationValues(a: AssessmentResult, id: string): Record<string, number | undefined> {
  return valuesOf(
    a.metrics.find((m) => m.id === id),
    a.measures.find((m) => m.id === `umap_${id}`),
    a.measures.find((m) => m.id === `space_${id}`),
  );
}

function statsOver(per: Record<string, number | undefined>[], cols: Column[]): Record<string, Stat | undefined> {
  const out: Record<string, Stat | undefined> = {};
  for (const c of cols) {
    const vs = per.map((p) => p[c.id]).filter((v): v is number => v !== undefined);
    out[c.id] = vs.length === per.length && vs.length > 0 ? stat(vs) : undefined;
  }
  return out;
}

/** The rows of the side-by-side table: each arm trained and untrained (mean over seeds), then HVG + PCA. */
export function tableRows(c: CompareConfig, assessments: Record<string, AssessmentResult>, cols: Column[]): { rows: Row[]; baseline?: Row } {
  const rows: Row[] = [];
  let baseline: Row | undefined;
  for (const arm of c.arms) {
    const a = assessments[arm.name];
    if (!a) continue;
    for (const kind of ["trained", "untrained"] as const) {
      const per = c.seeds.map((s) => representationValues(a, `${arm.name}_s${s}${kind === "untrained" ? "_untrained" : ""}`));
      rows.push({ name: kind === "trained" ? arm.name : `${arm.name} (untrained)`, kind, arm: arm.name, encoding: arm.encoding, values: statsOver(per, cols) });
    }
    if (a.metrics.some((m) => m.id === `${arm.name}_input`)) {
      rows.push({ name: `${arm.name} input (genes as a bag → PCA)`, kind: "input", arm: arm.name, encoding: arm.encoding, values: statsOver([representationValues(a, `${arm.name}_input`)], cols) });
    }
    if (!baseline) {
      const hvg = a.metrics.find((m) => m.id === "hvg");
      baseline = { name: hvg?.name ?? "HVG + PCA", kind: "baseline", values: statsOver([representationValues(a, "hvg")], cols) };
    }
  }
  return { rows, baseline };
}

/** Index of the best row per column (by mean). */
export function bestPerColumn(rows: Row[], cols: Column[]): Record<string, number> {
  const best: Record<string, number> = {};
  for (const col of cols) {
    let bi = -1;
    rows.forEach((r, i) => {
      const v = r.values[col.id]?.mean;
      if (v === undefined) return;
      const b = bi >= 0 ? rows[bi].values[col.id]!.mean : undefined;
      if (b === undefined || (col.nearZeroBetter ? Math.abs(v) < Math.abs(b) : col.higherBetter ? v > b : v < b)) bi = i;
    });
    if (bi >= 0) best[col.id] = bi;
  }
  return best;
}

/** Vega-Lite spec of the training curves: held-out loss ÷ its baseline's loss against tokens seen. */
export function curvesSpec(points: { arm: string; seed: string; tokens: number; relative: number }[]): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: {
      text: "Held-out loss against training tokens",
      subtitle: "each run's loss divided by its own baseline's loss (MLM: gene frequencies); below 1 = better than its baseline",
    },
    data: { values: points },
    width: 560,
    height: 320,
    layer: [
      {
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "tokens", type: "quantitative", title: "training tokens seen" },
          y: { field: "relative", type: "quantitative", title: "held-out loss / baseline loss", scale: { zero: false } },
          color: { field: "arm", type: "nominal", title: "arm", scale: { scheme: "tableau10" } },
          detail: { field: "seed", type: "nominal" },
        },
      },
      { mark: { type: "rule", strokeDash: [4, 4], color: "#888" }, encoding: { y: { datum: 1 } } },
    ],
  } as TopLevelSpec;
}

/** The written reading: the seed study's three questions (and batches) answered from the numbers. */
export function readComparison(
  c: CompareConfig,
  rows: Row[],
  baseline: Row | undefined,
  assessments: Record<string, AssessmentResult>,
  denoise?: CompareResult["denoise"],
  armDenoise: { name: string; trained: Stat; untrained: Stat }[] = [],
): string[] {
  const out: string[] = [];
  const trained = rows.filter((r) => r.kind === "trained");
  if (!trained.length) return ["No arm finished; nothing to read."];
  const seedsNote = c.seeds.length > 1 ? `${c.seeds.length} seeds; a difference smaller than the seed spread counts as none` : "one seed: no seed spread is known, so every difference below is indicative only";
  out.push(`Arms: ${trained.map((r) => `${r.name} (${r.encoding})`).join(", ")}; ${seedsNote}.`);

  // 1. within < between for every encoding?
  const keep: string[] = [];
  const lose: string[] = [];
  for (const r of trained) {
    const a = assessments[r.arm!];
    const ok = c.seeds.every((s) =>
      ["umap_", "space_"].every((p) => {
        const m = a.measures.find((x) => x.id === `${p}${r.arm}_s${s}`);
        return m !== undefined && m.medianWithin < m.medianBetween;
      }),
    );
    (ok ? keep : lose).push(`${r.name} (within/between ${fmtStat(r.values.ratio_umap)} in UMAP-5, ${fmtStat(r.values.ratio_space)} in its space)`);
  }
  out.push(
    lose.length === 0
      ? `1. Does every encoding keep within < between? Yes: every arm puts cells of the same type closer than cells of different types, in its UMAP-5 and in its embedding space, for every seed: ${keep.join("; ")}.`
      : `1. Does every encoding keep within < between? No: ${lose.join("; ")} ${lose.length === 1 ? "does" : "do"} not for every seed${keep.length ? `; ${keep.join("; ")} ${keep.length === 1 ? "does" : "do"}` : ""}.`,
  );

  // 2. which separates cell types most?
  const byKnn = [...trained].sort((a, b) => b.values.knn!.mean - a.values.knn!.mean);
  const top = byKnn[0];
  let q2 = `2. Which separates cell types most? By kNN accuracy: ${byKnn.map((r) => `${r.name} ${fmtStat(r.values.knn)}`).join(", ")}.`;
  if (byKnn.length > 1) {
    const d = differ(top.values.knn!, byKnn[1].values.knn!);
    q2 += d === "same" ? ` ${top.name} and ${byKnn[1].name} do not differ beyond the seed spread.` : ` ${top.name} leads.`;
  }
  const byAsw = [...trained].sort((a, b) => b.values.asw!.mean - a.values.asw!.mean);
  q2 += ` By ASW: ${byAsw[0].name} (${fmtStat(byAsw[0].values.asw)}).`;
  for (const r of trained) {
    const u = rows.find((x) => x.kind === "untrained" && x.arm === r.arm);
    if (u?.values.knn && r.values.knn) {
      const d = differ(r.values.knn, u.values.knn);
      q2 += ` ${r.name} vs its untrained floor: ${d === "higher" ? "training raised" : d === "lower" ? "training LOWERED" : "no difference in"} kNN accuracy (${fmtStat(u.values.knn)} → ${fmtStat(r.values.knn)})`;
      const inp = rows.find((x) => x.kind === "input" && x.arm === r.arm);
      q2 += inp?.values.knn ? `; its input alone (genes as a bag → PCA) ${f3(inp.values.knn.mean)}.` : ".";
    }
  }
  if (baseline?.values.knn) {
    const beats = trained.filter((r) => differ(r.values.knn!, baseline.values.knn!) === "higher");
    q2 += beats.length
      ? ` Above HVG + PCA (${f3(baseline.values.knn.mean)}): ${beats.map((r) => r.name).join(", ")}.`
      : ` No arm beats HVG + PCA (kNN accuracy ${f3(baseline.values.knn.mean)}, ASW ${f3(baseline.values.asw?.mean)}), as zero-shot foundation models did not in Kedzierska et al. 2023.`;
  }
  out.push(q2);

  // 3. do value-keeping encodings tighten cells of the same type compared with rank-value?
  const rank = trained.filter((r) => r.encoding === "rank");
  const valued = trained.filter((r) => r.encoding !== "rank");
  if (!rank.length || !valued.length) {
    out.push(
      `3. Do value-keeping encodings tighten cells of the same type compared with rank-value? Not answerable from this run: ${!rank.length ? "no rank-value arm" : "no value-keeping (binned or counts) arm"} was compared.`,
    );
  } else {
    const parts: string[] = [];
    // which genes a value arm reads decides what the comparison isolates (docs/compare.md)
    const maxLen = c.data.max_length;
    const genes = (name: string) => {
      const k = c.arms.find((a) => a.name === name)?.tokenize.top_genes;
      return k !== undefined ? `the rank arms' genes, top ${k}` : `random expressed genes${maxLen !== undefined ? `, ${maxLen} per cell` : ""}`;
    };
    for (const v of valued) {
      for (const rk of rank) {
        const du = differ(v.values.ratio_umap!, rk.values.ratio_umap!);
        const ds = differ(v.values.ratio_space!, rk.values.ratio_space!);
        const word = (d: string) => (d === "lower" ? "tighter" : d === "higher" ? "looser" : "no different");
        parts.push(`${v.name} [${genes(v.arm!)}] vs ${rk.name}: ${word(du)} in UMAP-5 (within/between ${fmtStat(v.values.ratio_umap)} vs ${fmtStat(rk.values.ratio_umap)}), ${word(ds)} in the embedding space (${fmtStat(v.values.ratio_space)} vs ${fmtStat(rk.values.ratio_space)})`);
      }
    }
    const tighter = parts.filter((p) => /: tighter in UMAP-5/.test(p)).length;
    out.push(
      `3. Do value-keeping encodings tighten cells of the same type compared with rank-value (the study's finding: rank-based measures spread a type further apart)? ${parts.join("; ")}. ` +
        (tighter === parts.length ? "Yes, for every pair here." : tighter === 0 ? "Not here: the study's finding does not hold for these models." : "Only for some pairs."),
    );
  }

  // 4. batches
  if (c.data.batch) {
    const withB = trained.filter((r) => r.values.batch_asw);
    if (withB.length) {
      const byB = [...withB].sort((a, b) => b.values.batch_asw!.mean - a.values.batch_asw!.mean);
      const keepTypes = byB.find((r) => differ(r.values.knn!, top.values.knn!) !== "lower") ?? byB[0];
      out.push(
        `4. Which mixes batches ("${c.data.batch}") best while keeping types apart? Batch ASW (1 = mixed): ${byB.map((r) => `${r.name} ${fmtStat(r.values.batch_asw)}`).join(", ")}` +
          (baseline?.values.batch_asw ? `; HVG + PCA ${f3(baseline.values.batch_asw.mean)}` : "") +
          `. Best mixing without losing type separation (kNN accuracy within the seed spread of the best arm): ${keepTypes.name} (batch ASW ${fmtStat(keepTypes.values.batch_asw)}, kNN ${fmtStat(keepTypes.values.knn)}, batch gap / type gap ${fmtStat(keepTypes.values.batch_gap)}).` +
          (baseline?.values.batch_asw && baseline.values.knn
            ? ` Against HVG + PCA it mixes batches ${{ higher: "better", lower: "worse", same: "no differently" }[differ(keepTypes.values.batch_asw!, baseline.values.batch_asw)]} and separates types ${{ higher: "better", lower: "worse", same: "no differently" }[differ(keepTypes.values.knn!, baseline.values.knn)]} (kNN ${f3(baseline.values.knn.mean)}); mixing batches at the price of mixing types is not integration.`
            : ""),
      );
    }
  }

  // denoising
  if (denoise) {
    const sign = (v: number) => `${v >= 0 ? "+" : ""}${f3(v)}`;
    const fmtImp = (st: Stat) => (st.sd !== undefined ? `${sign(st.mean)} ± ${f3(st.sd)}` : sign(st.mean));
    const knnStat: Stat = { mean: denoise.knn.improvement, values: [denoise.knn.improvement] };
    const parts = armDenoise.map((a) => {
      const vsKnn = differ(a.trained, knnStat);
      const vsInput = differ(a.trained, { mean: 0, values: [0] });
      const floorOk = a.untrained.values.every((v) => v <= 0);
      return (
        `${a.name} ${fmtImp(a.trained)} (${vsInput === "higher" ? "restores counts the downsampling removed" : vsInput === "lower" ? "worse than returning its input" : "no different from its input"}; ` +
        `${vsKnn === "higher" ? "beats" : vsKnn === "lower" ? "below" : "level with"} kNN smoothing; untrained ${fmtImp(a.untrained)}, ` +
        `${floorOk ? "<= 0 as an untrained model must" : "ABOVE 0 for a seed: the benchmark's sanity check FAILS"})`
      );
    });
    out.push(
      `Denoising (${Math.round(denoise.fraction * 100)} % of counts removed, ${denoise.nCells} held-out cells × ${denoise.nGenes} genes; improvement in Spearman with the full counts over the truly nonzero entries): ` +
        `the downsampled input scores 0 by definition (Spearman ${f3(denoise.downsampled.noisy2full)}); kNN smoothing (k = ${denoise.knn.k}) ${sign(denoise.knn.improvement)}` +
        (parts.length ? `; ${parts.join("; ")}.` : ". No arm of this run predicts counts, so no model was scored."),
    );
  }
  return out;
}

/** Everything {@link buildReport} needs. */
export interface ReportInput {
  config: CompareConfig;
  output: string;
  results: ArmSeedResult[];
  assessments: Record<string, AssessmentResult>;
  curves: { arm: string; seed: number; rows: Record<string, number>[] }[];
  denoise?: DenoiseBaselines;
  wallSeconds: number;
}

/** Write compare.json, report.md, report.html and figures/ into `output`. @returns the result. */
export async function buildReport(inp: ReportInput): Promise<CompareResult> {
  const c = inp.config;
  const cols = columns(c.data.batch !== undefined);
  const { rows, baseline } = tableRows(c, inp.assessments, cols);
  const arms = c.arms.map((a) => {
    const seeds = inp.results.filter((r) => r.arm === a.name);
    const s = (f: (r: ArmSeedResult) => number) => (seeds.length ? stat(seeds.map(f)) : undefined);
    const den = seeds.every((r) => r.denoise) && seeds.length ? { trained: stat(seeds.map((r) => r.denoise!.trained.improvement)), untrained: stat(seeds.map((r) => r.denoise!.untrained.improvement)) } : undefined;
    return {
      name: a.name,
      encoding: a.encoding,
      objective: a.objective,
      seeds,
      heldOutLoss: s((r) => r.eval.model_loss),
      baselineLoss: s((r) => r.eval.baseline_loss),
      tokens: s((r) => r.tokens),
      tokensPerSecond: s((r) => r.tokens_per_s),
      trainSeconds: s((r) => r.train_seconds),
      denoise: den,
    };
  });
  const reading = readComparison(
    c,
    rows,
    baseline,
    inp.assessments,
    inp.denoise,
    arms.filter((a) => a.denoise).map((a) => ({ name: a.name, trained: a.denoise!.trained, untrained: a.denoise!.untrained })),
  );

  const figDir = path.join(inp.output, "figures");
  fs.mkdirSync(figDir, { recursive: true });
  const points: { arm: string; seed: string; tokens: number; relative: number }[] = [];
  for (const cv of inp.curves) {
    const base = inp.results.find((r) => r.arm === cv.arm && r.seed === cv.seed)?.eval.baseline_loss;
    if (!base) continue;
    for (const r of cv.rows) if (r.val_loss !== undefined && r.tokens !== undefined) points.push({ arm: cv.arm, seed: String(cv.seed), tokens: r.tokens, relative: r.val_loss / base });
  }
  const curvesSvg = await renderFigure(curvesSpec(points), figDir, "curves");

  const all = [...rows, ...(baseline ? [baseline] : [])];
  const best = bestPerColumn(all, cols);
  const cell = (ri: number, col: Column) => {
    const t = fmtStat(all[ri].values[col.id]);
    return best[col.id] === ri ? `**${t}**` : t;
  };
  const mainHead = ["representation", ...cols.map((x) => x.label)];
  const mainRows = all.map((r, ri) => [r.name, ...cols.map((col) => cell(ri, col))]);
  const trainHead = ["arm", "encoding × objective", "steps", "training tokens", "held-out loss", "its baseline", "tokens/s (over training wall time)", "training wall time (s)"];
  const trainRows = arms.map((a) => [
    a.name,
    `${a.encoding} × ${a.objective}`,
    a.seeds.map((s) => s.steps).join(", "),
    a.tokens ? a.tokens.values.map((t) => t.toLocaleString("en-US")).join(", ") : "–",
    fmtStat(a.heldOutLoss),
    fmtStat(a.baselineLoss),
    fmtStat(a.tokensPerSecond),
    fmtStat(a.trainSeconds),
  ]);
  const denHead = ["prediction", "Spearman with full counts (nonzero entries)", "improvement over the downsampled input"];
  const denRows: string[][] = [];
  if (inp.denoise) {
    const d = inp.denoise;
    denRows.push(["downsampled input", f3(d.downsampled.reco2full), f3(d.downsampled.improvement)]);
    denRows.push([`kNN smoothing (k = ${d.knn.k}, PCA of the downsampled data)`, f3(d.knn.reco2full), f3(d.knn.improvement)]);
    for (const a of arms) {
      if (!a.denoise) continue;
      denRows.push([a.name, fmtStat(stat(a.seeds.map((s) => s.denoise!.trained.reco2full))), fmtStat(a.denoise.trained)]);
      const u = a.denoise.untrained;
      denRows.push([`${a.name} (untrained)`, fmtStat(stat(a.seeds.map((s) => s.denoise!.untrained.reco2full))), fmtStat(u) + (u.mean > 0 ? " (FAILS the sanity check: an untrained model must score ≤ 0)" : "")]);
    }
  }
  const result: CompareResult = {
    config: c.source,
    output: inp.output,
    columns: cols,
    rows,
    arms,
    baseline,
    denoise: inp.denoise,
    reading,
    wallSeconds: inp.wallSeconds,
  };
  writeFileAtomic(path.join(inp.output, "compare.json"), JSON.stringify(result, null, 2) + "\n");

  const missing = ["rank-mlm", "binned-mlm", "counts-denoise"].filter((n) => !c.arms.some((a) => a.name === n));
  const intro = [
    `Data: \`${c.data.input}\`, label \`${c.data.label}\`${c.data.batch ? `, batch \`${c.data.batch}\`` : ""}; seeds ${c.seeds.join(", ")}; the same architecture and a budget of ${Number(c.arms[0]?.training.max_tokens ?? 0).toLocaleString("en-US")} training tokens for every arm.`,
    `Each arm's assessment (${c.assess.min_cells}+ cells per type, ${c.assess.per_type ?? c.assess.min_cells} sampled per type, ${c.assess.n_hvg} HVGs, k = ${c.assess.k}) is in \`<arm>/assess/report.html\`; values are mean ± sd over seeds, the best value per column in bold.`,
    `Total wall time ${(inp.wallSeconds / 60).toFixed(1)} min (this call; finished arms reused).`,
    ...(missing.length ? [`Arms not in this comparison: ${missing.join(", ")}.`] : []),
  ];
  const md: string[] = ["# cellfm compare", "", ...intro.map((s) => `- ${s}`), "", "## Reading", "", ...reading.map((s) => `- ${s}`), ""];
  md.push("## Assessment, side by side", "", mdTable(mainHead, mainRows), "");
  md.push("## Training", "", mdTable(trainHead, trainRows), "", "![training curves](figures/curves.png)", "");
  md.push("## Denoising benchmark (scPRINT protocol)", "");
  if (inp.denoise) md.push(mdTable(denHead, denRows), "");
  else md.push("Not run: the downsampling of the denoising objective is not available in this build.", "");
  writeFileAtomic(path.join(inp.output, "report.md"), md.join("\n"));

  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>");
  const bold = (h: string) => h.replace(/\*\*([^*<]+)\*\*/g, "<b>$1</b>");
  const html = [
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>cellfm compare</title>",
    "<style>body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}figure svg{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 3px}</style>",
    "</head><body><h1>cellfm compare</h1><ul>",
    ...intro.map((s) => `<li>${esc(s)}</li>`),
    "</ul><h2>Reading</h2><ul>",
    ...reading.map((s) => `<li>${esc(s)}</li>`),
    "</ul><h2>Assessment, side by side</h2>",
    bold(htmlTable(mainHead, mainRows)),
    "<h2>Training</h2>",
    htmlTable(trainHead, trainRows),
    `<figure>${curvesSvg.replace(/^<\?xml[^>]*>/, "")}</figure>`,
    "<h2>Denoising benchmark (scPRINT protocol)</h2>",
    inp.denoise ? htmlTable(denHead, denRows) : "<p>Not run: the downsampling of the denoising objective is not available in this build.</p>",
    "</body></html>",
  ].join("\n");
  writeFileAtomic(path.join(inp.output, "report.html"), html);
  return result;
}
