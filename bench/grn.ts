/**
 * Benchmark of `cellfm grn` (issue: gene networks from attention, §5): 1,000 real cells (pbmc3k,
 * all types as one network) × 2,000 highly variable genes with the Geneformer V1 6-layer shape
 * (untrained weights: speed does not depend on them), scored against TRRUST with the random and
 * co-expression baselines. Wall time and peak RSS of the whole command, in a child process so the
 * RSS is its own; extraction on every core (worker threads, `--workers` default) and on one.
 * Quick mode: 100 cells × 500 genes. Slow (~10+ minutes in all): skip with `npm run bench -- --skip grn`.
 * Measurements: docs/grn.md ("Speed").
 *
 *   npx tsx bench/grn.ts                                  (parent: both methods)
 *   npx tsx bench/grn.ts --case qk:1000:2000[:workers]    one case
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BenchRow } from "./run.js";

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.join(here, "..");

async function runCase(spec: string): Promise<void> {
  const [method, cells, genes, workers] = spec.split(":");
  const { initBackend } = await import("../src/backend.js");
  const { BertForMaskedLM } = await import("../src/model/bert.js");
  const { GENEFORMER_V1_6L } = await import("../src/model/config.js");
  const { writeCheckpoint } = await import("../src/model/checkpoint.js");
  const { loadGeneformerDictionaries } = await import("../src/tokenize/dictionaries.js");
  const { runGrn } = await import("../src/grn/run.js");
  const be = await initBackend("auto");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-bench-grn-"));
  try {
    const m = new BertForMaskedLM(GENEFORMER_V1_6L, { seed: 0 });
    const ck = path.join(dir, "ckpt");
    const dict = loadGeneformerDictionaries("V1");
    writeCheckpoint(ck, {
      model: m,
      cellfm: { encoding: "geneformer-rank-value", objective: "mlm", model_version: "V1", dictionary: dict.files.tokens, backend: be.name, cellfm_version: "bench", created: new Date().toISOString() },
    });
    m.dispose();
    const t0 = performance.now();
    await runGrn({
      checkpoint: ck,
      input: path.join(root, "data", "pbmc3k_seurat.h5ad"),
      output: path.join(dir, "out"),
      label: "batch", // one label for every cell: all types in one network
      cellTypes: ["pbmc3k"],
      maxCells: Number(cells),
      genes: `hvg:${genes}`,
      method: method as "qk" | "attention",
      truth: path.join(root, "data", "grn", "trrust_v2_human.tsv"),
      workers: workers ? Number(workers) : undefined,
      quiet: true,
    });
    const seconds = (performance.now() - t0) / 1000;
    const ru = process.resourceUsage(); // whole process: every thread's CPU time
    const cpuSeconds = (ru.userCPUTime + ru.systemCPUTime) / 1e6;
    process.stdout.write(`RESULT ${JSON.stringify({ seconds, cpuSeconds, peakRssMb: ru.maxRSS / 1024, backend: be.name })}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(opts: { quick: boolean }): Promise<BenchRow[]> {
  const cores = (await import("../src/threads.js")).availableCores();
  const cases = opts.quick ? ["qk:100:500", "attention:100:500"] : ["qk:1000:2000", `qk:1000:2000:1`, "attention:200:2000"];
  if (cores === 1) cases.splice(cases.indexOf("qk:1000:2000:1"), 1);
  const rows: BenchRow[] = [];
  for (const c of cases) {
    const res = spawnSync(process.execPath, ["--import", "tsx", path.join(here, "grn.ts"), "--case", c], { encoding: "utf8", cwd: root });
    const line = (res.stdout ?? "").split("\n").find((l) => l.startsWith("RESULT "));
    const [method, cells, genes, workers] = c.split(":");
    const name = `V1 6L, ${Number(cells).toLocaleString("en-US")} pbmc3k cells x ${Number(genes).toLocaleString("en-US")} HVGs, --method ${method}, ${workers ? `${workers} thread` : `${cores} threads`}`;
    if (!line) {
      rows.push({ area: "grn", case: name, metric: "error", value: NaN, unit: "", note: (res.stderr ?? "").trim().split("\n").slice(-3).join(" ") });
      continue;
    }
    const r = JSON.parse(line.slice(7)) as { seconds: number; cpuSeconds: number; peakRssMb: number; backend: string };
    rows.push({ area: "grn", case: `${name} (${r.backend})`, metric: "wall time", value: r.seconds, unit: "s", note: "incl. tokenizing, baselines and scoring" });
    rows.push({ area: "grn", case: `${name} (${r.backend})`, metric: "CPU time", value: r.cpuSeconds, unit: "s", note: "all threads, incl. setup" });
    rows.push({ area: "grn", case: `${name} (${r.backend})`, metric: "peak RSS", value: r.peakRssMb, unit: "MB" });
  }
  return rows;
}

const argv = process.argv.slice(2);
const ci = argv.indexOf("--case");
if (ci >= 0) await runCase(argv[ci + 1]);
