/**
 * Figures of the assessment as Vega-Lite specs, rendered headless to SVG (vega `View.toSVG`) and PNG
 * (@resvg/resvg-js, system fonts). Each builder returns a Vega-Lite spec from precomputed summaries
 * (medians, histogram bins, subsampled points), so figures stay small whatever the number of pairs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../io.js";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { Resvg } from "@resvg/resvg-js";
import type { Histogram1D, Histogram2D } from "./stats.js";

const FONT = "DejaVu Sans";
const CONFIG = { font: FONT, axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 220 }, title: { fontSize: 14 } };

/** Render a Vega-Lite spec to `<dir>/<name>.svg` and `<dir>/<name>.png` (2× scale). @returns the SVG text. */
export async function renderFigure(spec: TopLevelSpec, dir: string, name: string): Promise<string> {
  const vg = compile({ ...spec, config: { ...CONFIG, ...(spec as { config?: object }).config } } as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(vg), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  writeFileAtomic(path.join(dir, `${name}.svg`), svg);
  const png = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: FONT, sansSerifFamily: FONT },
  })
    .render()
    .asPng();
  writeFileAtomic(path.join(dir, `${name}.png`), png);
  return svg;
}

/** Box plots of the per-type-pair medians, within vs between, one panel per measure (independent y). */
export function withinBetweenSpec(rows: { measure: string; kind: "within" | "between"; value: number }[]): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text: "Median distance per cell-type pair: within vs between types", subtitle: "one value per type (within) or per pair of types (between); lower = more alike" },
    data: { values: rows },
    facet: { column: { field: "measure", type: "nominal", title: null, header: { labelFontSize: 11, labelLimit: 260 } } },
    spec: {
      width: 150,
      height: 260,
      layer: [
        {
          mark: { type: "boxplot", extent: "min-max", size: 40 },
          encoding: {
            x: { field: "kind", type: "nominal", title: null, sort: ["within", "between"], axis: { labelAngle: 0 } },
            y: { field: "value", type: "quantitative", title: "median distance", scale: { zero: false } },
            color: { field: "kind", type: "nominal", sort: ["within", "between"], scale: { range: ["#1f77b4", "#ff7f0e"] }, legend: null },
          },
        },
      ],
    },
    resolve: { scale: { y: "independent" } },
  } as TopLevelSpec;
}

/** Heatmaps of a 2-D histogram over pairs, within and between types side by side. */
export function jointSpec(title: string, xLabel: string, yLabel: string, within: Histogram2D, between: Histogram2D): TopLevelSpec {
  const rows: { kind: string; x0: number; x1: number; y0: number; y1: number; count: number; frac: number }[] = [];
  for (const [kind, h] of [["within types", within], ["between types", between]] as const) {
    const n = h.bins;
    let tot = 0;
    for (const c of h.counts) tot += c;
    for (let by = 0; by < n; by++) for (let bx = 0; bx < n; bx++) {
      const c = h.counts[by * n + bx];
      if (c === 0) continue;
      rows.push({
        kind,
        x0: h.xlo + ((h.xhi - h.xlo) * bx) / n,
        x1: h.xlo + ((h.xhi - h.xlo) * (bx + 1)) / n,
        y0: h.ylo + ((h.yhi - h.ylo) * by) / n,
        y1: h.ylo + ((h.yhi - h.ylo) * (by + 1)) / n,
        count: c,
        frac: c / tot,
      });
    }
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text: title, subtitle: "2-D histogram of cell pairs (colour: fraction of the panel's pairs, log scale)" },
    data: { values: rows },
    facet: { column: { field: "kind", type: "nominal", title: null, sort: ["within types", "between types"] } },
    spec: {
      width: 280,
      height: 260,
      mark: "rect",
      encoding: {
        x: { field: "x0", type: "quantitative", title: xLabel },
        x2: { field: "x1" },
        y: { field: "y0", type: "quantitative", title: yLabel },
        y2: { field: "y1" },
        color: { field: "frac", type: "quantitative", scale: { type: "log", scheme: "viridis" }, title: "fraction of pairs" },
        tooltip: [{ field: "count", type: "quantitative" }],
      },
    },
  } as TopLevelSpec;
}

/** Per-cell sparsity histogram (fraction of genes with zero counts), all cells vs the selected subset. */
export function sparsitySpec(all: Histogram1D, selected: Histogram1D): TopLevelSpec {
  const rows: { set: string; x0: number; x1: number; frac: number }[] = [];
  for (const [set, h] of [[`all cells (${all.total})`, all], [`selected cells (${selected.total})`, selected]] as const) {
    const tot = h.total || 1;
    for (let b = 0; b < h.bins; b++) rows.push({ set, x0: h.edge(b), x1: h.edge(b + 1), frac: h.counts[b] / tot });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text: "Sparsity: fraction of zero genes per cell", subtitle: "all genes of the input; bars normalised within each set" },
    data: { values: rows },
    width: 520,
    height: 260,
    mark: { type: "rect", opacity: 0.55 },
    encoding: {
      x: { field: "x0", type: "quantitative", title: "fraction of genes with zero count", scale: { domain: [Math.min(all.lo, selected.lo), 1] } },
      x2: { field: "x1" },
      y: { field: "frac", type: "quantitative", title: "fraction of cells", stack: null },
      color: { field: "set", type: "nominal", title: null, legend: { orient: "top-left" } },
    },
  } as TopLevelSpec;
}

/** 2-D UMAP scatter coloured by a category (cell type or batch). */
export function scatterSpec(title: string, points: { x: number; y: number; c: string }[], colorTitle: string): TopLevelSpec {
  const nCat = new Set(points.map((p) => p.c)).size;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text: title, subtitle: `${points.length} cells` },
    data: { values: points },
    width: 420,
    height: 420,
    mark: { type: "circle", size: points.length > 3000 ? 6 : 14, opacity: 0.7 },
    encoding: {
      x: { field: "x", type: "quantitative", title: "UMAP 1", axis: { labels: false, ticks: false } },
      y: { field: "y", type: "quantitative", title: "UMAP 2", axis: { labels: false, ticks: false } },
      color: {
        field: "c",
        type: "nominal",
        title: colorTitle,
        scale: { scheme: nCat <= 10 ? "tableau10" : "category20" },
        legend: { columns: nCat > 30 ? 3 : nCat > 15 ? 2 : 1, symbolSize: 40, labelFontSize: nCat > 30 ? 8 : 11, labelLimit: 160 },
      },
    },
  } as TopLevelSpec;
}
