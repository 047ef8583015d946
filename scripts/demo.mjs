#!/usr/bin/env node
/**
 * `npm run demo`: the main job end to end on the bundled real data (2,638 PBMCs, data/pbmc3k_seurat.h5ad).
 *
 *   1. cellfm tokenize   Geneformer V1 rank-value encoding, cell_type/batch carried
 *   2. cellfm train      configs/demo-cell.yaml (small BERT, masked-gene modelling + a bottleneck that decodes
 *                        each cell's HVG counts from its cell embedding, a few minutes on 2 cores)
 *   3. untrained model   the same architecture and initialisation, no training (the baseline)
 *   4. cellfm embed      both models -> cell embeddings (the checkpoint's pooling: max over the last layer), + .h5ad
 *   5. cellfm assess     within/between cell-type distances and embedding metrics, figures, report
 *   6. a first reading   runs/demo/report.md: held-out masked-gene loss vs a gene-frequency baseline (and
 *                        the bottleneck's NB loss vs a per-gene NB),
 *                        held-out kNN cell-type accuracy and within/between distances, trained vs untrained
 *
 * Everything goes to runs/demo/ (rewritten on every run of the demo). Options: --backend <name>,
 * --max-steps N (shorter training), --quiet.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
process.chdir(root);
const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const backend = opt("backend");
const maxSteps = opt("max-steps");
const quiet = argv.includes("--quiet");

const out = "runs/demo";
const bin = path.join(root, "bin", "cellfm.js");
const t0 = Date.now();
const timings = [];

if (!fs.existsSync(path.join(root, "dist", "cli.js"))) {
  console.error("dist/ is missing: building (npm run build) ...");
  const b = spawnSync("npm", ["run", "build"], { stdio: "inherit" });
  if (b.status !== 0) process.exit(b.status ?? 1);
}

function step(title, args) {
  console.error(`\n=== ${title}\n$ cellfm ${args.join(" ")}`);
  const s = Date.now();
  const r = spawnSync(process.execPath, [bin, ...args], { stdio: "inherit" });
  const sec = (Date.now() - s) / 1000;
  timings.push([title, sec]);
  if (r.status !== 0) {
    console.error(`demo: step "${title}" failed (exit ${r.status}); stopping`);
    process.exit(r.status ?? 1);
  }
}
const be = backend ? ["--backend", backend] : [];
const q = quiet ? ["--quiet"] : [];

fs.mkdirSync(out, { recursive: true });

step("1/5 tokenize", [
  "tokenize", "--input", "data/pbmc3k_seurat.h5ad", "--output", `${out}/tokens`,
  "--model-version", "V1", "--carry", "cell_type,batch", "--force", ...q,
]);
step("2/5 train", ["train", "--config", "configs/demo-cell.yaml", "--force", ...be, ...q, ...(maxSteps ? ["--max-steps", maxSteps] : [])]);

// 3. The untrained baseline: same config and the same seeded initialisation as training started from.
const { readCheckpoint, writeCheckpoint } = await import("../dist/model/checkpoint.js");
const { buildModel } = await import("../dist/model/factory.js");
const { initBackend } = await import("../dist/backend.js");
const { loadTrainConfig } = await import("../dist/train/config.js");
// the trainer initialises the model with training.seed (recorded in cellfm_state.json)
const cfgSeed = () => loadTrainConfig("configs/demo-cell.yaml").training.seed;
await initBackend(backend ?? "auto");
{
  const s = Date.now();
  const trained = readCheckpoint(`${out}/model/final`);
  const seed = Number(trained.trainerState?.training?.seed ?? cfgSeed());
  // the same architecture, heads included (the cell embedding's pooling and the bottleneck decoder)
  const untrained = buildModel(trained.config, trained.model.spec, { seed });
  writeCheckpoint(`${out}/untrained`, { model: untrained, cellfm: { ...trained.cellfm, untrained_floor: true } }, { force: true });
  trained.model.dispose();
  untrained.dispose();
  timings.push(["3/5 untrained baseline", (Date.now() - s) / 1000]);
}

step("4/5 embed (trained)", [
  "embed", "--checkpoint", `${out}/model/final`, "--input", `${out}/tokens`, "--output", `${out}/emb_trained.arrow`,
  "--h5ad", `${out}/emb_trained.h5ad`, "--force", ...be, ...q,
]);
step("4/5 embed (untrained)", [
  "embed", "--checkpoint", `${out}/untrained`, "--input", `${out}/tokens`, "--output", `${out}/emb_untrained.arrow`, "--force", ...be, ...q,
]);
step("5/5 assess", [
  "assess", "--input", "data/pbmc3k_seurat.h5ad", "--embeddings", `${out}/emb_trained.arrow`, `${out}/emb_untrained.arrow`,
  "--embedding-names", "cellfm_trained", "cellfm_untrained", "--label", "cell_type", "--min-cells", "150", "--per-type", "150",
  "--output", `${out}/assess`, "--force", ...q,
]);

// 6. The first reading.
const { readEmbeddings } = await import("../dist/data/embeddings.js");
const { knnAccuracy } = await import("../dist/assess/knn.js");
const { splitCells } = await import("../dist/train/loop.js");

const cfg = loadTrainConfig("configs/demo-cell.yaml");
const evalRes = JSON.parse(fs.readFileSync(`${out}/model/eval.json`, "utf8"));
const embT = readEmbeddings(`${out}/emb_trained.arrow`);
const embU = readEmbeddings(`${out}/emb_untrained.arrow`);
const labels = embT.obs.columns.cell_type;
const n = embT.cellIds.length;
const { val } = splitCells(n, cfg.data.val_fraction, cfg.data.split_seed);
const trainMask = new Array(n).fill(true);
for (const i of val) trainMask[i] = false;

function withinBetween(e) {
  // median Euclidean distance within each type and between types, over all pairs of cells
  const d = e.dim;
  const within = [];
  const between = [];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) {
        const t = e.data[i * d + k] - e.data[j * d + k];
        s += t * t;
      }
      (labels[i] === labels[j] ? within : between).push(Math.sqrt(s));
    }
  }
  const med = (a) => {
    const f = Float64Array.from(a).sort();
    return f.length % 2 ? f[(f.length - 1) / 2] : (f[f.length / 2 - 1] + f[f.length / 2]) / 2;
  };
  const w = med(within);
  const b = med(between);
  return { within: w, between: b, ratio: b / w };
}
const rows = [];
for (const [name, e] of [["trained", embT], ["untrained", embU]]) {
  const acc = knnAccuracy(e.data, n, e.dim, labels, { k: 15, trainMask });
  rows.push({ name, acc, ...withinBetween(e) });
}
let assessMetrics;
try {
  assessMetrics = JSON.parse(fs.readFileSync(`${out}/assess/metrics.json`, "utf8"));
} catch {
  assessMetrics = undefined;
}

const fmt = (x, p = 4) => (typeof x === "number" ? x.toFixed(p) : String(x));
const [tr, un] = rows;
// with several weighted terms (training.objectives) eval.json splits the held-out loss per term
const mlmEval = evalRes.terms?.mlm ?? { model_loss: evalRes.model_loss, baseline_loss: evalRes.unigram_loss };
const bnEval = evalRes.terms?.bottleneck;
const beatsUnigram = mlmEval.model_loss < evalRes.unigram_loss;
const beatsUntrained = tr.acc > un.acc;
const md = [];
md.push("# cellfm demo: a first reading", "");
md.push(`Data: \`data/pbmc3k_seurat.h5ad\` (${n} real PBMCs, 10x v1; Seurat tutorial annotation), Geneformer V1 rank-value tokens.`);
md.push(`Model: \`configs/demo-cell.yaml\` (${cfg.model.num_hidden_layers ?? "?"} layers, hidden ${cfg.model.hidden_size ?? "?"}), trained ${evalRes.step ?? ""} steps on ${cfg.data.max_length ?? ""}-token cells; ${val.length} cells held out from training.`, "");
md.push("## Did it learn? (held-out cells)", "");
md.push("| | masked-gene loss (nats) |", "|---|---|");
md.push(`| trained model | ${fmt(mlmEval.model_loss)} |`);
md.push(`| unigram baseline (gene frequencies) | ${fmt(evalRes.unigram_loss)} |`, "");
md.push(beatsUnigram ? `The model predicts masked genes better than gene frequencies alone (by ${fmt(evalRes.unigram_loss - mlmEval.model_loss)} nats per gene).` : "**The model does NOT beat the gene-frequency baseline.**", "");
if (bnEval) {
  md.push("| | bottleneck: HVG counts from the cell embedding (NB, nats per gene) |", "|---|---|");
  md.push(`| trained model | ${fmt(bnEval.model_loss)} |`, `| per-gene NB baseline (each gene's share × library size) | ${fmt(bnEval.baseline_loss)} |`, "");
}
md.push("## Do its cell embeddings separate cell types?", "");
md.push(evalRes.pooling
  ? `Cell embedding = the ${evalRes.pooling} over the last layer's gene states (the pooling the cell-level objective trained; \`cellfm embed\` reads it from the checkpoint).`
  : "Cell embedding = mean of the gene states of the second-to-last layer (Geneformer's default).", "");
md.push("| embedding | kNN accuracy, held-out cells (k=15) | median distance within types | between types | between / within |", "|---|---|---|---|---|");
for (const r of rows) md.push(`| ${r.name} | ${fmt(r.acc, 3)} | ${fmt(r.within, 3)} | ${fmt(r.between, 3)} | ${fmt(r.ratio, 3)} |`);
md.push("");
md.push(beatsUntrained
  ? `Training raised held-out kNN cell-type accuracy from ${fmt(un.acc, 3)} (untrained, same architecture) to ${fmt(tr.acc, 3)}.`
  : `**Training did not raise held-out kNN accuracy** (untrained ${fmt(un.acc, 3)}, trained ${fmt(tr.acc, 3)}).`);
md.push("");
md.push(`The full assessment (UMAP and Spearman distances, silhouette, NMI/ARI, HVG+PCA baseline, figures): \`${out}/assess/report.md\` (and \`report.html\`).`, "");
if (assessMetrics?.metrics) {
  md.push(`Standard metrics on ${assessMetrics.nSelected ?? ""} cells (${(assessMetrics.kept ?? []).length || ""} types, 150 per type; leave-one-out kNN), next to the HVG+PCA baseline:`, "");
  md.push("| representation | kNN accuracy | ASW (scaled) | k-means NMI | k-means ARI |", "|---|---|---|---|---|");
  for (const m of assessMetrics.metrics) md.push(`| ${m.name} | ${fmt(m.knnAccuracy, 3)} | ${fmt(m.aswScaled, 3)} | ${fmt(m.kmeansNmi, 3)} | ${fmt(m.kmeansAri, 3)} |`);
  const byName = Object.fromEntries(assessMetrics.metrics.map((m) => [m.name, m]));
  const mt = byName.cellfm_trained;
  const mu = byName.cellfm_untrained;
  md.push("", "A small model trained for minutes on 2,374 cells stays below the HVG baseline; `npm run compare-cell-long` trains the bottleneck longer (docs/compare.md).");
  if (mt && mu) {
    const better = [];
    const worse = [];
    for (const [k, label] of [["knnAccuracy", "kNN accuracy"], ["aswScaled", "ASW"], ["kmeansNmi", "k-means NMI"], ["kmeansAri", "k-means ARI"]]) {
      (mt[k] > mu[k] ? better : worse).push(label);
    }
    md.push(`Compared with the untrained model, training improved ${better.length ? better.join(", ") : "none of these"}` +
      (worse.length ? ` but not ${worse.join(", ")}: local neighbourhoods improve, global cluster structure does not at this training length.` : "."));
  }
  md.push("");
}
md.push("## Time", "", "| step | seconds |", "|---|---|");
for (const [t, s] of timings) md.push(`| ${t} | ${s.toFixed(1)} |`);
md.push(`| total | ${((Date.now() - t0) / 1000).toFixed(1)} |`, "");
fs.writeFileSync(`${out}/report.md`, md.join("\n"));
fs.writeFileSync(`${out}/reading.json`, JSON.stringify({ eval: evalRes, embeddings: rows }, null, 2));

console.log("");
console.log(`held-out masked-gene loss: model ${fmt(mlmEval.model_loss)} vs unigram ${fmt(evalRes.unigram_loss)} nats`);
if (bnEval) console.log(`held-out bottleneck loss: model ${fmt(bnEval.model_loss)} vs per-gene NB ${fmt(bnEval.baseline_loss)} nats`);
for (const r of rows) console.log(`${r.name.padEnd(9)} kNN acc (held-out) ${fmt(r.acc, 3)}   within ${fmt(r.within, 3)}  between ${fmt(r.between, 3)}`);
console.log(`\nreport: ${path.join(root, out, "report.md")}`);
console.log(`assessment: ${path.join(root, out, "assess", "report.html")}`);
console.log(`total ${((Date.now() - t0) / 60000).toFixed(1)} min`);
