/**
 * `npm run bench`: runs every benchmark module in bench/ (tokenizer, model, training, assessment)
 * and prints one table. Speed and memory targets live here, never in timed tests.
 *
 *   npm run bench               full sizes (tens of minutes on 2 cores)
 *   npm run bench -- --quick    small sizes (a few minutes), to check the benchmarks run
 *   npm run bench -- --only tokenize,model
 *   npm run bench -- --skip grn  everything but the named modules (grn's full rows take ~10+ minutes)
 *   npm run bench -- --compare  cellfm next to its peers (Geneformer's tokenizer, PyTorch) in the same
 *                               run, printed as a ratio table (bench/compare.ts says how to give the peers)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as os from "node:os";

export interface BenchRow {
  area: string;
  case: string;
  metric: string;
  value: number;
  unit: string;
  note?: string;
}

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const onlyIdx = args.indexOf("--only");
const compare = args.includes("--compare");
// --compare runs the peer comparison alone; the comparison is not part of the plain benchmark
const only = onlyIdx >= 0 ? new Set(args[onlyIdx + 1].split(",")) : compare ? new Set(["compare"]) : undefined;
const skipIdx = args.indexOf("--skip");
const skip = new Set(skipIdx >= 0 ? args[skipIdx + 1].split(",") : []);

const here = path.dirname(new URL(import.meta.url).pathname);
const modules = fs
  .readdirSync(here)
  .filter((f) => f.endsWith(".ts") && f !== "run.ts")
  .map((f) => f.replace(/\.ts$/, ""))
  .filter((name) => (only ? only.has(name) : name !== "compare"))
  .filter((name) => !skip.has(name))
  .sort();

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US");
  return v.toPrecision(3);
}

const rows: BenchRow[] = [];
console.error(`cellfm bench (${quick ? "quick" : "full"}) on ${os.cpus().length} cores, node ${process.version}`);
for (const name of modules) {
  const t0 = Date.now();
  console.error(`\n== ${name} ...`);
  try {
    const mod = await import(path.join(here, `${name}.ts`));
    if (typeof mod.run !== "function") {
      console.error(`== ${name}: a script of its own (no run()), skipped`);
      continue;
    }
    const got: BenchRow[] = await mod.run({ quick, args });
    rows.push(...got);
    console.error(`== ${name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } catch (err) {
    console.error(`== ${name} FAILED: ${(err as Error).stack ?? err}`);
    rows.push({ area: name, case: "(failed)", metric: "error", value: NaN, unit: "", note: String((err as Error).message ?? err) });
  }
}

const header = ["area", "case", "metric", "value", "unit", "note"];
const table = rows.map((r) => [r.area, r.case, r.metric, fmt(r.value), r.unit, r.note ?? ""]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
console.log(line(header));
console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
for (const r of table) console.log(line(r));
