/**
 * The assessment's outputs: `metrics.json` (everything, for machines), `report.md` and a
 * self-contained `report.html` (SVG figures inlined), including a short automatic reading of the
 * results against the study's findings (the 2023 MIT 6.S898 study "Examining assumptions in scRNA-seq foundation model pre-training"; docs/assess.md).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../io.js";

/** Summary of one pairwise measure over the selected cells (all values are distances: lower = more alike). */
export interface MeasureSummary {
  id: string;
  label: string;
  /** true for the Spearman measure (rank-value, no model). */
  rankBased: boolean;
  /** median over types of the within-type medians. */
  medianWithin: number;
  /** median over type pairs of the between-type medians. */
  medianBetween: number;
  /** medianWithin / medianBetween: lower = types separate more (scale-free). */
  ratio: number;
  /** P(within-type median < between-type median) over type-pair medians (Mann–Whitney AUC). */
  aucTypePairs: number;
  /** P(within-type pair distance < between-type pair distance) over all cell pairs (histogram, 400 bins). */
  aucPairs: number;
  /** fraction of types whose within median is below every between median involving it. */
  typesSeparated: number;
  /** every within median below every between median. */
  withinAllBelowBetween: boolean;
  within: Record<string, number>;
  between: Record<string, number>;
  /**
   * with --batch: within-type medians for same-batch and cross-batch pairs, and (cross − same) ÷
   * (between − within), undefined when the types are not apart (between median ≤ within median).
   */
  batch?: { typesWithSeveralBatches: number; medianWithinSameBatch: number; medianWithinCrossBatch: number; batchGapOverTypeGap?: number };
}

/** Standard metrics of one representation (HVG baseline or an embedding). */
export interface RepresentationMetrics {
  id: string;
  name: string;
  dim: number;
  /** leave-one-out kNN cell-type accuracy. */
  knnAccuracy: number;
  aswRaw: number;
  /** (ASW + 1) / 2 as scib. */
  aswScaled: number;
  kmeansNmi: number;
  kmeansAri: number;
  /** scib graph connectivity on the kNN graph (per type, fraction in the largest component). */
  graphConnectivity: number;
  /** scib batch ASW (with --batch). */
  batchAsw?: number;
  /** linear probe (src/assess/probe.ts): held-out accuracy and macro-F1 of a logistic regression. */
  probeAccuracy?: number;
  probeMacroF1?: number;
}

/** Everything `runAssessment` computed; serialised as metrics.json. */
export interface AssessmentResult {
  input: string;
  nCells: number;
  nGenes: number;
  label: string;
  batch?: string;
  settings: Record<string, unknown>;
  /** how the linear probe's cells were split, and how many each side has. */
  probe?: { how: string; nTrain: number; nTest: number; model: string };
  kept: { type: string; nCells: number; nSelected: number }[];
  dropped: { type: string; nCells: number }[];
  nSelected: number;
  /** cells with zero counts that no embedding holds (the tokenizer drops them), left out of the selection. */
  cellsLeftOut?: { n: number; examples: string[]; reason: string };
  constantRankCells: number;
  explainedVariance?: number;
  sparsity: { medianZeroFractionAll: number; medianZeroFractionSelected: number };
  embeddings: { name: string; file: string; dim: number; cellsInFile: number; extraCells: number; meta: Record<string, string> }[];
  measures: MeasureSummary[];
  metrics: RepresentationMetrics[];
  timings: Record<string, number>;
}

const f3 = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "–" : Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(3));

/** The automatic reading: short sentences answering the study's questions. */
export function readResults(r: AssessmentResult): string[] {
  const out: string[] = [];
  const ms = r.measures;
  const ok = ms.filter((m) => m.medianWithin < m.medianBetween);
  out.push(
    ok.length === ms.length
      ? `Within < between for every measure: all ${ms.length} measures put cells of the same type closer than cells of different types (median of within-type medians below median of between-type medians).`
      : `Within < between does NOT hold for every measure: ${ms.filter((m) => m.medianWithin >= m.medianBetween).map((m) => m.label).join(", ")} ${ms.length - ok.length === 1 ? "does" : "do"} not separate types.`,
  );
  const strict = ms.filter((m) => m.withinAllBelowBetween).map((m) => m.label);
  if (strict.length) out.push(`Every within-type median lies below every between-type median for: ${strict.join(", ")}.`);
  const best = [...ms].sort((a, b) => b.aucPairs - a.aucPairs || a.ratio - b.ratio)[0];
  const bestRatio = [...ms].sort((a, b) => a.ratio - b.ratio)[0];
  out.push(
    `Separation by cell pairs (AUC of within vs between distances): highest for ${best.label} (${f3(best.aucPairs)}); ` +
      `smallest within/between ratio of medians for ${bestRatio.label} (${f3(bestRatio.ratio)}). ` +
      `The study found the widest gap for raw values through UMAP.`,
  );
  const sp = ms.find((m) => m.id === "spearman");
  const umap = ms.find((m) => m.id === "umap_hvg");
  const space = ms.find((m) => m.id === "space_hvg");
  if (sp && umap && space) {
    const spreads = sp.ratio > umap.ratio && sp.ratio > space.ratio;
    out.push(
      `Rank-based vs raw values: Spearman's within/between ratio is ${f3(sp.ratio)} against ${f3(umap.ratio)} for the HVG UMAP and ${f3(space.ratio)} for the HVG space; ` +
        (spreads
          ? "the rank measure spreads cells of one type further apart relative to the type gap, as the study found."
          : "the rank measure does not spread cells of one type further apart here (the study's finding does not hold on these data).") +
        ` Cells' median fraction of zero genes: ${f3(r.sparsity.medianZeroFractionSelected)} (selected), which the study suspects drives this (ties among zeros carry no rank information).`,
    );
  }
  for (const m of ms.filter((x) => x.id.startsWith("umap_") && x.id !== "umap_hvg")) {
    out.push(`${m.label}: within/between ratio ${f3(m.ratio)}, pair AUC ${f3(m.aucPairs)} (HVG UMAP: ${f3(umap?.ratio)}, ${f3(umap?.aucPairs)}).`);
  }
  if (r.batch) {
    const b = ms.filter((m) => m.batch?.batchGapOverTypeGap !== undefined);
    if (b.length) {
      const worst = [...b].sort((x, y) => y.batch!.batchGapOverTypeGap! - x.batch!.batchGapOverTypeGap!)[0];
      const least = [...b].sort((x, y) => x.batch!.batchGapOverTypeGap! - y.batch!.batchGapOverTypeGap!)[0];
      out.push(
        `Across batches ("${r.batch}"): within a type, cells from different batches are further apart than cells from the same batch by ` +
          b.map((m) => `${Math.round(m.batch!.batchGapOverTypeGap! * 100)}% (${m.label})`).join(", ") +
          ` of the between-type gap. Most batch-sensitive: ${worst.label}; least: ${least.label}` +
          (sp?.batch?.batchGapOverTypeGap !== undefined && umap?.batch?.batchGapOverTypeGap !== undefined
            ? sp.batch.batchGapOverTypeGap < umap.batch.batchGapOverTypeGap
              ? " — the rank measure suppresses batch effects relative to the HVG UMAP."
              : " — the rank measure does not suppress batch effects relative to the HVG UMAP."
            : "."),
      );
      const ba = r.metrics.filter((m) => m.batchAsw !== undefined);
      if (ba.length) out.push(`Batch ASW (1 = batches mixed): ${ba.map((m) => `${m.name} ${f3(m.batchAsw)}`).join(", ")}.`);
    } else out.push(`No cell type has cells from more than one batch of "${r.batch}", so batch effects cannot be assessed.`);
  }
  const bestKnn = [...r.metrics].sort((a, b) => b.knnAccuracy - a.knnAccuracy)[0];
  out.push(`Standard metrics: best kNN accuracy ${bestKnn.name} (${f3(bestKnn.knnAccuracy)}); the HVG baseline is always included, as it beat zero-shot foundation models in Kedzierska et al. 2023.`);
  return out;
}

/** A Markdown table. */
export function mdTable(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

/** An HTML table (cells escaped). */
export function htmlTable(head: string[], rows: (string | number)[][]): string {
  const esc = (s: string | number) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;");
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

/**
 * Write metrics.json, report.md and report.html into `dir` (figures already in `dir/figures`).
 */
export function writeReport(dir: string, r: AssessmentResult, figures: { name: string; title: string; svg: string }[]): void {
  writeFileAtomic(path.join(dir, "metrics.json"), JSON.stringify(r, null, 2));
  const reading = readResults(r);
  const sections: { title: string; head: string[]; rows: (string | number)[][] }[] = [];
  sections.push({
    title: "Cell types kept",
    head: ["cell type", "cells in data", "cells sampled"],
    rows: r.kept.map((k) => [k.type, k.nCells, k.nSelected]),
  });
  sections.push({
    title: `Measures: within vs between cell types (distances; Spearman as 1 − ρ)`,
    head: ["measure", "median within", "median between", "ratio within/between", "AUC type-pair medians", "AUC cell pairs", "types separated"],
    rows: r.measures.map((m) => [m.label, f3(m.medianWithin), f3(m.medianBetween), f3(m.ratio), f3(m.aucTypePairs), f3(m.aucPairs), f3(m.typesSeparated)]),
  });
  if (r.measures.some((m) => m.batch)) {
    sections.push({
      title: `Within-type distances across batches (${r.batch})`,
      head: ["measure", "types with ≥2 batches", "median same batch", "median cross batch", "batch gap / type gap"],
      rows: r.measures.filter((m) => m.batch).map((m) => [m.label, m.batch!.typesWithSeveralBatches, f3(m.batch!.medianWithinSameBatch), f3(m.batch!.medianWithinCrossBatch), f3(m.batch!.batchGapOverTypeGap)]),
    });
  }
  sections.push({
    title: "Standard metrics",
    head: ["representation", "dim", "kNN accuracy (LOO)", "linear probe accuracy", "linear probe macro-F1", "ASW raw", "ASW (scaled)", "k-means NMI", "k-means ARI", "graph connectivity", ...(r.batch ? ["batch ASW"] : [])],
    rows: r.metrics.map((m) => [m.name, m.dim, f3(m.knnAccuracy), f3(m.probeAccuracy), f3(m.probeMacroF1), f3(m.aswRaw), f3(m.aswScaled), f3(m.kmeansNmi), f3(m.kmeansAri), f3(m.graphConnectivity), ...(r.batch ? [f3(m.batchAsw)] : [])]),
  });
  const spear = r.measures.find((m) => m.id === "spearman");
  const intro = [
    `Input: \`${r.input}\` (${r.nCells} cells × ${r.nGenes} genes); label \`${r.label}\`${r.batch ? `, batch \`${r.batch}\`` : ""}.`,
    `Selection: ${r.kept.length} cell types with ≥ ${r.settings.minCells} cells, ${r.settings.perType} sampled per type (seed ${r.settings.seed}): ${r.nSelected} cells. ` +
      (r.dropped.length ? `Dropped (too few cells): ${r.dropped.map((d) => `${d.type} (${d.nCells})`).join(", ")}.` : "No type dropped."),
    `Genes: ${r.settings.nHvg} highly variable genes (Seurat flavour on normalize_total 1e4 + log1p, computed on all cells). ` +
      (r.settings.pca ? `HVG baseline: PCA to ${r.settings.nPcs} dimensions (${f3((r.explainedVariance ?? 0) * 100)}% of variance) before UMAP.` : "HVG baseline: no PCA (the study's setting)."),
    `Measures (all as distances, lower = more alike): Euclidean distance in a 5-D UMAP (umap-learn's algorithm, exact ${r.settings.k}-NN graph, random init) of each representation and in the representation itself; Spearman distance 1 − ρ over the HVGs (average ranks for ties)` +
      (spear ? `, median within-type ρ = ${f3(1 - spear.medianWithin)}` : "") +
      (r.constantRankCells ? `; ${r.constantRankCells} cells have no counts on any HVG and get ρ = 0 with every cell` : "") +
      ".",
    ...(r.probe ? [`Linear probe: ${r.probe.model}; ${r.probe.how} (${r.probe.nTrain} fitted on, ${r.probe.nTest} scored).`] : []),
    ...r.embeddings.map((e) => `Embedding **${e.name}**: \`${e.file}\`, ${e.dim}-d${Object.keys(e.meta).length ? `, ${Object.entries(e.meta).map(([k, v]) => `${k}=${v}`).join(", ")}` : ""}${e.extraCells ? ` (${e.extraCells} cells in the file are not in the data and were ignored)` : ""}.`),
  ];
  const md: string[] = ["# cellfm assessment", "", ...intro.map((s) => `- ${s}`), "", "## Reading", "", ...reading.map((s) => `- ${s}`), ""];
  for (const s of sections) md.push(`## ${s.title}`, "", mdTable(s.head, s.rows), "");
  md.push("## Figures", "");
  for (const f of figures) md.push(`### ${f.title}`, "", `![${f.title}](figures/${f.name}.png)`, "");
  md.push("Figures are also in SVG (`figures/*.svg`); all numbers are in `metrics.json`.", "");
  writeFileAtomic(path.join(dir, "report.md"), md.join("\n"));

  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>");
  const html = [
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>cellfm assessment</title>",
    "<style>body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 3px}</style>",
    "</head><body><h1>cellfm assessment</h1><ul>",
    ...intro.map((s) => `<li>${esc(s)}</li>`),
    "</ul><h2>Reading</h2><ul>",
    ...reading.map((s) => `<li>${esc(s)}</li>`),
    "</ul>",
    ...sections.map((s) => `<h2>${esc(s.title)}</h2>${htmlTable(s.head, s.rows)}`),
    "<h2>Figures</h2>",
    ...figures.map((f) => `<figure><figcaption><b>${esc(f.title)}</b></figcaption>${f.svg.replace(/^<\?xml[^>]*>/, "")}</figure>`),
    "</body></html>",
  ].join("\n");
  writeFileAtomic(path.join(dir, "report.html"), html);
}
