/**
 * `npm run bench -- --compare`: cellfm next to the tools a user would otherwise pick, measured in the
 * same run on the same machine, as ratios (issue "Speed", §2):
 *
 * - `cellfm tokenize` (whole command: process start to exit) vs Geneformer's own
 *   `TranscriptomeTokenizer.tokenize_anndata` (`bench/peers/geneformer_tokenizer.py`) on pbmc3k, on
 *   kang2018 when given, and on a generated 200,000-cell file;
 * - training tokens/s (forward + backward + update, `workers` = cores) vs plain PyTorch
 *   (`bench/peers/pytorch_bert.py`, same Geneformer V1 6-layer shape, threads = cores) at 512 x 4,
 *   256 x 8 and 2,048 x 1;
 * - embedding tokens/s at equal work (all 6 layers, no MLM head) vs PyTorch `no_grad` inference;
 * - peak RSS of each side, and MFU of each side against the machine's matmul peak measured in this
 *   run: cellfm's own one-thread sgemm at 2,048³ (`bench/matmul.ts --peak`: the native BLAS where
 *   built), times the threads the row used (workers, or PyTorch's threads); the all-core figure of
 *   numpy / PyTorch (`bench/peers/peak.py`) is printed beside it;
 * - threads: at 512 x 4, data-parallel workers with one BLAS thread each (the default) against one
 *   process with `CELLFM_BLAS_THREADS` = cores (issue 18: measure both, default to the faster);
 * - the matmul ceiling: tfjs-wasm's one-thread `matMul` GFLOP/s × cores (ideal data parallelism over
 *   worker threads, `bench/matmul.ts`) against PyTorch's with every core (`bench/peers/matmul_shapes.py`)
 *   at the model's own shapes: matmuls are ~80 % of a wasm training step, so cellfm's tokens/s can
 *   exceed this share of PyTorch's only as far as PyTorch runs below its own matmul peak (its MFU).
 *
 * cellfm and each peer alternate (one run of each per round, best round of each side counts), so a
 * shared machine's changing load hits both alike; the table's header gives the load average.
 *
 * Nothing is downloaded. A peer that is not available is skipped with a note:
 * - Python with torch (Debian `python3-torch`): `CELLFM_BENCH_PYTHON` (default `/usr/bin/python3`, else `python3`);
 * - Geneformer's tokenizer needs `anndata` (Debian `python3-anndata`) and upstream's `geneformer/tokenizer.py`,
 *   given with `--geneformer-tokenizer FILE` or `CELLFM_GENEFORMER_TOKENIZER=FILE`, e.g.
 *   `git clone https://huggingface.co/ctheodoris/Geneformer && git -C Geneformer show HEAD:geneformer/tokenizer.py > gf_tokenizer.py`;
 * - kang2018 (Kang et al. 2018 PBMC control cells, any raw-count `.h5ad`): `--kang FILE` or `CELLFM_BENCH_KANG=FILE`.
 *
 * Where the native BLAS kernels (src/blas.ts) are built, every training, embedding and matmul row is
 * measured twice in the same rounds: with them (the default) and on plain wasm (`CELLFM_BLAS=off`,
 * rows marked "plain wasm, before"), so before/after and PyTorch come from the same minutes.
 *
 *   npm run bench -- --compare [--quick] [--geneformer-tokenizer gf_tokenizer.py] [--kang kang2018.h5ad] [--tokenize-only | --model-only]
 *
 * `--tokenize-only`: the tokenizer rows alone (no training, embedding or matmul peak);
 * `--model-only`: the training, embedding and matmul rows alone (no tokenizer).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BenchRow } from "./run.js";
import { runCli, writeSyntheticH5ad } from "./tokenize.js";

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, "..");
const cores = os.availableParallelism();

/** One line of the ratio table. */
interface Ratio {
  work: string;
  cellfm: string;
  peer: string;
  /** cellfm speed / peer speed (> 1: cellfm faster); NaN when the peer was skipped. */
  ratio: number;
  target?: number;
  note: string;
}

function arg(args: string[], flag: string, env: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : process.env[env] || undefined;
}

/** A Python that imports every module in `mods`, or why there is none. */
function python(mods: string[]): { exe?: string; why?: string } {
  const cands = process.env.CELLFM_BENCH_PYTHON ? [process.env.CELLFM_BENCH_PYTHON] : ["/usr/bin/python3", "python3"];
  for (const exe of cands) {
    const r = spawnSync(exe, ["-c", mods.map((m) => `import ${m}`).join("; ")], { encoding: "utf8" });
    if (r.status === 0) return { exe };
    if (r.error === undefined) return { why: `${exe} cannot import ${mods.join(", ")} (${(r.stderr ?? "").trim().split("\n").pop()})` };
  }
  return { why: "no python3 found (set CELLFM_BENCH_PYTHON)" };
}

/** Run a command (with extra environment variables `env`) and parse its `RESULT {...}` line. */
function result<T>(cmd: string, args: string[], what: string, env: Record<string, string> = {}): T {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 26, cwd: root, env: { ...process.env, ...env } });
  const line = (r.stdout ?? "").split("\n").find((l) => l.startsWith("RESULT "));
  if (r.status !== 0 || !line) throw new Error(`${what} failed: ${(r.stderr ?? "").trim().split("\n").slice(-5).join(" | ")}`);
  return JSON.parse(line.slice(7)) as T;
}

const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const mb = (x: number) => (Number.isFinite(x) ? `${f0(x)} MB` : "-");

/** True when this checkout's native BLAS kernels load (then "before" rows on plain wasm are added). */
function blasActive(): boolean {
  const r = spawnSync(process.execPath, ["--import", "tsx", "-e", 'import("./src/blas.ts").then((b) => console.log(b.nativeBlas() ? "yes" : "no"))'], { encoding: "utf8", cwd: root });
  return (r.stdout ?? "").includes("yes");
}

/** Matmul FLOPs per token of the 6-layer V1 shape (as src/train/flops.ts: training = 3 x forward). */
function flopsPerToken(L: number, mode: "train" | "infer"): number {
  const H = 256, F = 512, NL = 6, V = 25426;
  const enc = NL * (8 * H * H + 4 * H * F + 4 * L * H);
  return mode === "infer" ? enc : 3 * (enc + 0.15 * (2 * H * H + 2 * H * V));
}

/** Entry point for bench/run.ts (`--compare`). */
export async function run(opts: { quick: boolean; args?: string[] }): Promise<BenchRow[]> {
  const args = opts.args ?? [];
  const rows: BenchRow[] = [];
  const ratios: Ratio[] = [];
  const torchPy = python(["torch"]);
  const adPy = python(["anndata", "numpy"]);
  const gfFile = arg(args, "--geneformer-tokenizer", "CELLFM_GENEFORMER_TOKENIZER");
  const kang = arg(args, "--kang", "CELLFM_BENCH_KANG");
  const tokenizeOnly = args.includes("--tokenize-only");
  const modelOnly = args.includes("--model-only");
  const gfWhy = !gfFile
    ? "skipped: give upstream geneformer/tokenizer.py with --geneformer-tokenizer FILE (or CELLFM_GENEFORMER_TOKENIZER)"
    : !fs.existsSync(gfFile)
      ? `skipped: ${gfFile} not found`
      : adPy.why
        ? `skipped: ${adPy.why}`
        : undefined;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-bench-compare-"));
  const load0 = os.loadavg()[0].toFixed(1); // 1-minute load average: how shared the machine was
  let peak = NaN;
  let peakNote = "";
  // MFU denominator: one thread's sgemm peak (2,048³) on cellfm's kernels, best of the start and the end
  let peak1 = NaN;
  let peak1Note = "";
  const measurePeak1 = () => {
    try {
      const got = result<{ square_2048: number; kernels: string }>(process.execPath, ["--import", "tsx", path.join(here, "matmul.ts"), "--peak", "--seconds", opts.quick ? "1" : "3"], "cellfm sgemm peak");
      if (!(got.square_2048 * 1e9 <= peak1)) {
        peak1 = got.square_2048 * 1e9;
        peak1Note = `${got.kernels}: tf.matMul 2048^3 FP32, best of the start and the end of the run`;
      }
    } catch (e) {
      peak1Note = `one-thread peak not measured: ${(e as Error).message.slice(0, 120)}`;
    }
  };
  const measurePeak = () => {
    if (!torchPy.exe) return;
    const r = spawnSync(torchPy.exe, [path.join(here, "peers", "peak.py")], { encoding: "utf8" });
    const got = [...(r.stdout ?? "").matchAll(/PEAK (\w+): ([\d.]+) GFLOP\/s/g)].map((m) => ({ k: m[1], v: Number(m[2]) * 1e9 }));
    const best = got.filter((g) => g.k !== "torch_1thread").sort((a, b) => b.v - a.v)[0];
    if (best && !(best.v <= peak)) {
      peak = best.v;
      peakNote = `${best.k} 2048^3 FP32 matmul, ${cores} threads (best of two measurements)`;
    }
  };
  try {
    // ---- the machine's matmul peak (MFU denominator): measured at the start and again at the end of
    // the run (the larger counts: on a shared machine a single measurement can be low)
    if (!tokenizeOnly) (measurePeak(), measurePeak1());

    // ---- tokenizer
    if (!modelOnly) await tokenizerRows();
    async function tokenizerRows(): Promise<void> {
    const inputs: { name: string; file?: string; cells?: number; reps: number; why?: string }[] = [
      { name: "pbmc3k (2,638 cells)", file: path.join(root, "data", "pbmc3k_seurat.h5ad"), reps: 3 },
      kang && fs.existsSync(kang)
        ? { name: `kang2018 (${path.basename(kang)})`, file: kang, reps: 3 }
        : { name: "kang2018", reps: 0, why: kang ? `${kang} not found` : "not given (--kang FILE or CELLFM_BENCH_KANG)" },
    ];
    const [nBig, kBig] = opts.quick ? [20_000, 500] : [200_000, 1_000];
    const big = path.join(work, "generated.h5ad");
    const tg = performance.now();
    await writeSyntheticH5ad(big, nBig, 20_000, kBig, 7);
    const genLabel = `generated ${nBig.toLocaleString("en-US")} cells x 20,000 genes, ${kBig.toLocaleString("en-US")} nonzeros/cell (${(fs.statSync(big).size / 1e9).toFixed(2)} GB)`;
    console.error(`   ${genLabel} written in ${((performance.now() - tg) / 1000).toFixed(0)} s`);
    inputs.push({ name: genLabel, file: big, cells: nBig, reps: 1 });
    const targets = [3, 5, 10];
    inputs.forEach((inp, i) => {
      const target = targets[i];
      if (!inp.file) {
        ratios.push({ work: `tokenize V1, ${inp.name}`, cellfm: "-", peer: "-", ratio: NaN, target, note: `skipped: ${inp.why}` });
        return;
      }
      // cellfm and the peer alternate, one run each per round (a shared machine's load changes by the
      // minute: alternating exposes both to the same load); the best round of each side counts
      let best = { wall: Infinity, maxRssMb: 0 };
      let g: { tokenize_s_best: number; cells: number; peak_rss_mb: number } | undefined;
      let peerErr = "";
      for (let r = 0; r < inp.reps; r++) {
        const out = path.join(work, `tok-${i}-${r}`);
        const c = runCli(["tokenize", "-i", inp.file, "-o", out, "--model-version", "V1", "--quiet"]);
        best = { wall: Math.min(best.wall, c.wall), maxRssMb: Math.max(best.maxRssMb, c.maxRssMb) };
        fs.rmSync(out, { recursive: true, force: true });
        if (gfWhy || peerErr) continue;
        try {
          const got = result<{ tokenize_s_best: number; cells: number; peak_rss_mb: number }>(
            adPy.exe!,
            [path.join(here, "peers", "geneformer_tokenizer.py"), gfFile!, path.join(root, "data", "geneformer"), inp.file, "V1", inp.reps > 1 ? "2" : "1"], // 2: the peer keeps a warm second call per round
            "Geneformer tokenizer",
          );
          g = g ? { ...got, tokenize_s_best: Math.min(g.tokenize_s_best, got.tokenize_s_best), peak_rss_mb: Math.max(g.peak_rss_mb, got.peak_rss_mb) } : got;
        } catch (e) {
          peerErr = `peer failed: ${(e as Error).message.slice(0, 200)}`;
        }
      }
      rows.push({ area: "compare", case: `cellfm tokenize V1, ${inp.name}`, metric: "whole command", value: best.wall, unit: "s", note: `peak RSS ${mb(best.maxRssMb)}; best of ${inp.reps}` });
      let peer = "-";
      let ratio = NaN;
      let note = gfWhy ?? peerErr;
      if (g && !peerErr) {
        peer = `${f2(g.tokenize_s_best)} s, ${mb(g.peak_rss_mb)}`;
        ratio = g.tokenize_s_best / best.wall;
        note = `Geneformer tokenize_anndata only (imports and dataset save not counted); memory ${f2(g.peak_rss_mb / best.maxRssMb)}x cellfm's; best of ${inp.reps} alternating runs each`;
        rows.push({ area: "compare", case: `Geneformer tokenize_anndata, ${inp.name}`, metric: "time", value: g.tokenize_s_best, unit: "s", note: `peak RSS ${mb(g.peak_rss_mb)}` });
      }
      ratios.push({ work: `tokenize V1, ${inp.name}`, cellfm: `${f2(best.wall)} s, ${mb(best.maxRssMb)}`, peer, ratio, target, note });
    });
    fs.rmSync(big, { force: true });
    }

    if (!tokenizeOnly) {
      // ---- training and embedding (Geneformer V1 6L shape)
      const seconds = opts.quick ? 3 : 12;
      type Cellfm = { tokensPerS: number; peakRssMb: number; backend: string; kernels?: string };
      // "after" = the kernels initBackend installs (the native BLAS where built); "before" = plain wasm
      // (CELLFM_BLAS=off), run in the same rounds so the two see the same load
      const sides = [
        { label: "", env: {} as Record<string, string> },
        ...(blasActive() ? [{ label: " (plain wasm, before)", env: { CELLFM_BLAS: "off" } }] : []),
      ];
      type Torch = { tokens_per_s: number; peak_rss_mb: number; version: string; threads: number };
      type Variant = { label: string; spec: string; env: Record<string, string>; threads: number };
      const cases: { work: string; cellfm: string; torch: string[]; flops: number; target: number; note: string; threads: number; torchThreads: number; extra?: Variant[] }[] = [];
      for (const [L, B] of [[512, 4], [256, 8], [2048, 1]] as const) {
        const w = Math.min(cores, B);
        cases.push({
          work: `train ${L} x ${B}, workers ${w}`,
          cellfm: `train:v1:${L}:${B}:${w}`,
          torch: ["--seq", String(L), "--batch", String(B), "--mode", "train", "--head", "masked", "--threads", String(cores)],
          flops: flopsPerToken(L, "train"),
          target: L === 2048 ? NaN : 1,
          note: `cellfm: fwd + bwd + SGD; PyTorch: fwd + bwd + AdamW (${cores} threads); MLM logits at the 15 % masked positions`,
          threads: w,
          torchThreads: cores,
          // threads: one process whose BLAS uses every core, against the workers above (same minutes)
          extra: L === 512 && w > 1 && sides.length > 1
            ? [{ label: ` (workers 1 x ${cores} BLAS threads)`, spec: `train:v1:${L}:${B}:1`, env: { CELLFM_BLAS_THREADS: String(cores) }, threads: cores }]
            : undefined,
        });
      }
      cases.push({
        work: "embed 512 x 4, 1 thread, 6 layers",
        cellfm: "embed:v1:512:4",
        torch: ["--seq", "512", "--batch", "4", "--mode", "infer", "--threads", "1"],
        flops: flopsPerToken(512, "infer"),
        target: 1,
        note: "equal work: all 6 layers, no MLM head; one thread each (PyTorch's OpenBLAS pool pinned to 1, bench/peers/blas_threads.py)",
        threads: 1,
        torchThreads: 1,
      });
      cases.push({
        work: `embed 512 x 4, ${cores} workers, 6 layers`,
        cellfm: "embedpar:v1:512:4",
        torch: ["--seq", "512", "--batch", "4", "--mode", "infer", "--threads", String(cores)],
        flops: flopsPerToken(512, "infer"),
        target: 1,
        note: `cellfm: ${cores} worker threads, start-up included; PyTorch ${cores} threads`,
        threads: cores,
        torchThreads: cores,
      });
      // cellfm and PyTorch alternate per case, `rounds` runs each; the best run of each side counts
      const rounds = opts.quick ? 1 : 2;
      const mmCellfm: Record<string, number> = {}, mmTorch: Record<string, number> = {};
      let mmWhy = "";
      for (const c of cases) {
        const variants: Variant[] = [...sides.map((sd) => ({ label: sd.label, spec: c.cellfm, env: sd.env, threads: c.threads })), ...(c.extra ?? [])];
        const cfs: (Cellfm | undefined)[] = variants.map(() => undefined);
        const cfErrs = variants.map(() => "");
        let pt: Torch | undefined;
        let ptWhy = torchPy.why ? `skipped: ${torchPy.why}` : "";
        for (let r = 0; r < rounds; r++) {
          variants.forEach((side, si) => {
            try {
              const got = result<Cellfm>(process.execPath, ["--import", "tsx", path.join(here, "model.ts"), "--case", side.spec, "--seconds", String(seconds), "--layer", "0", "--workers", String(cores)], `cellfm ${side.spec}`, side.env);
              const cf = cfs[si];
              if (!cf || got.tokensPerS > cf.tokensPerS) cfs[si] = { ...got, peakRssMb: Math.max(got.peakRssMb, cf?.peakRssMb ?? 0) };
            } catch (e) {
              cfErrs[si] = (e as Error).message.slice(0, 200);
            }
          });
          if (torchPy.exe && !ptWhy) {
            try {
              const got = result<Torch>(torchPy.exe, [path.join(here, "peers", "pytorch_bert.py"), ...c.torch, "--reps", opts.quick ? "1" : "2", "--min-sec", opts.quick ? "1" : "3"], "PyTorch peer");
              if (!pt || got.tokens_per_s > pt.tokens_per_s) pt = { ...got, peak_rss_mb: Math.max(got.peak_rss_mb, pt?.peak_rss_mb ?? 0) };
            } catch (e) {
              ptWhy = `peer failed: ${(e as Error).message.slice(0, 200)}`;
            }
          }
        }
        // achieved FLOP/s and threads used, divided by threads x the one-thread peak at the end
        const mfu = (tps: number, threads: number) => ` (MFU [${tps * c.flops}|${threads}])`;
        const ptText = pt ? `${f0(pt.tokens_per_s)} tok/s${mfu(pt.tokens_per_s, c.torchThreads)}, ${mb(pt.peak_rss_mb)}` : "-";
        if (pt) rows.push({ area: "compare", case: `PyTorch ${pt.version} ${c.work.replace(/, (workers \d+|\d+ workers|1 thread)/, "")}`, metric: "tokens/s", value: pt.tokens_per_s, unit: "tok/s", note: `${pt.threads} threads; peak RSS ${mb(pt.peak_rss_mb)}` });
        variants.forEach((side, si) => {
          const cf = cfs[si];
          const cfText = cf ? `${f0(cf.tokensPerS)} tok/s${mfu(cf.tokensPerS, side.threads)}, ${mb(cf.peakRssMb)}` : `failed: ${cfErrs[si]}`;
          const work = si >= sides.length ? `train 512 x 4${side.label}` : c.work + side.label;
          if (cf) rows.push({ area: "compare", case: `cellfm ${work}`, metric: "tokens/s", value: cf.tokensPerS, unit: "tok/s", note: `${cf.backend}; ${cf.kernels ?? ""}; peak RSS ${mb(cf.peakRssMb)}` });
          ratios.push({
            work,
            cellfm: cfText,
            peer: ptText,
            ratio: cf && pt ? cf.tokensPerS / pt.tokens_per_s : NaN,
            target: si === 0 && Number.isFinite(c.target) ? c.target : undefined,
            note: (pt ? c.note : ptWhy || c.note) + (si === 0 && cf?.kernels ? `; matmuls: ${cf.kernels}` : ""),
          });
        });
      }
      // ---- the matmul ceiling at the model's shapes (cellfm: one wasm thread × cores; PyTorch: every core)
      let mmKernels = "";
      for (let r = 0; r < rounds; r++) {
        for (const side of sides) {
          try {
            const got = result<Record<string, number | string>>(process.execPath, ["--import", "tsx", path.join(here, "matmul.ts"), "--seconds", opts.quick ? "0.5" : "2"], "cellfm matmul", side.env);
            if (!side.label) mmKernels = String(got.kernels ?? "");
            for (const [k, v] of Object.entries(got)) if (typeof v === "number") mmCellfm[k + side.label] = Math.max(mmCellfm[k + side.label] ?? 0, v);
          } catch (e) {
            mmWhy = (e as Error).message.slice(0, 200);
          }
        }
        if (torchPy.exe) {
          try {
            const got = result<Record<string, number | string>>(torchPy.exe, [path.join(here, "peers", "matmul_shapes.py"), "--threads", String(cores), "--seconds", opts.quick ? "0.5" : "2"], "PyTorch matmul");
            for (const [k, v] of Object.entries(got)) if (typeof v === "number" && k !== "threads" && k !== "blas_threads") mmTorch[k] = Math.max(mmTorch[k] ?? 0, v);
          } catch (e) {
            mmWhy = (e as Error).message.slice(0, 200);
          }
        }
      }
      if (Object.keys(mmCellfm).length === 0) {
        ratios.push({ work: "matmul ceiling", cellfm: "failed", peer: "-", ratio: NaN, note: mmWhy || "bench/matmul.ts printed no RESULT line" });
      }
      for (const k of Object.keys(mmCellfm)) {
        const cf = mmCellfm[k] * cores, pt = mmTorch[k.replace(/ \(.*/, "")];
        rows.push({ area: "compare", case: `cellfm tf.matMul ${k}, 1 thread`, metric: "GFLOP/s", value: mmCellfm[k], unit: "GFLOP/s", note: `x ${cores} workers = ${f2(cf)} (ideal)${k.includes("(") ? "" : `; ${mmKernels}`}` });
        ratios.push({
          work: `matmul ceiling, ${k.replace(/_/g, " ")}`,
          cellfm: `${f2(cf)} GFLOP/s (1 thread x ${cores}, ideal)`,
          peer: pt ? `${f2(pt)} GFLOP/s (${cores} threads)` : "-",
          ratio: pt ? cf / pt : NaN,
          note: pt ? `raw matmul speed${k.includes("(") ? "" : ` (${mmKernels})`}: training can beat this ratio only as far as PyTorch idles below its peak (its MFU above)` : torchPy.why ? `skipped: ${torchPy.why}` : mmWhy || "PyTorch matmul not measured",
        });
      }
      measurePeak();
      measurePeak1();
      if (Number.isFinite(peak)) rows.push({ area: "compare", case: `machine matmul peak, ${cores} threads (numpy/PyTorch)`, metric: "GFLOP/s", value: peak / 1e9, unit: "GFLOP/s", note: peakNote });
      if (Number.isFinite(peak1)) {
        rows.push({ area: "compare", case: "machine matmul peak, 1 thread (cellfm sgemm 2048^3)", metric: "GFLOP/s", value: peak1 / 1e9, unit: "GFLOP/s", note: peak1Note });
        ratios.push({
          work: "machine peak: sgemm 2,048³, 1 thread (MFU denominator)",
          cellfm: `${f2(peak1 / 1e9)} GFLOP/s`,
          peer: Number.isFinite(peak) ? `${f2(peak / 1e9)} GFLOP/s (${peakNote.split(",")[0]}, ${cores} threads)` : "-",
          ratio: NaN,
          note: `${peak1Note}; MFU of a row = its matmul FLOP/s / (its threads x this)`,
        });
      } else peak1Note = `peak not measured (${peak1Note}); MFU not shown`;
      for (const r of ratios) {
        // MFU texts were written with the achieved FLOP/s and threads; divide by threads x the final one-thread peak
        for (const k of ["cellfm", "peer"] as const) {
          r[k] = r[k].replace(/MFU \[([\d.e+]+)\|(\d+)\]/g, (_, f, t) => `MFU ${Number.isFinite(peak1) ? ((100 * Number(f)) / (Number(t) * peak1)).toFixed(1) : "-"} %`);
        }
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }

  // ---- the ratio table (stdout, markdown)
  const head = ["work", "cellfm", "peer", "ratio", "target", "note"];
  const body = ratios.map((r) => [r.work, r.cellfm, r.peer, Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}x` : "-", r.target ? `>= ${r.target}x${Number.isFinite(r.ratio) ? (r.ratio >= r.target ? " met" : " NOT met") : ""}` : "", r.note]);
  const out = [
    `\nRatios measured in this run (${cores} cores, node ${process.version}; load average ${load0} at the start, ${os.loadavg()[0].toFixed(1)} at the end; ` +
      `cellfm and each peer alternate, best run of each; MFU against threads x the one-thread sgemm peak (${peak1Note || "-"}); ratio > 1: cellfm faster)\n`,
    "| " + head.join(" | ") + " |",
    "|" + head.map(() => "---").join("|") + "|",
    ...body.map((r) => "| " + r.join(" | ") + " |"),
    "",
  ];
  console.log(out.join("\n"));
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run({ quick: process.argv.includes("--quick"), args: process.argv.slice(2) });
}
