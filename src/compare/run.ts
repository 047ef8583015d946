/**
 * `cellfm compare`: train one model per arm (encoding × objective × options) on the same cells, with
 * the same architecture, seeds and token budget, embed the same cells with each trained model and its
 * untrained floor, assess them next to HVG + PCA, score denoising, and write one report.
 *
 * It chains the existing stages (tokenize → train → embed → assess) as library calls; nothing of
 * theirs is re-implemented. Output folder:
 * ```
 * <output>/
 *   compare-config.json        the validated configuration this folder was made with
 *   <arm>/arm.json             the arm's merged configuration (a changed arm is refused, not mixed)
 *   tokens/<encoding>/         `cellfm tokenize` output, one per encoding + tokenizer options (shared by arms)
 *   <arm>/seed-<s>/train/      `cellfm train` output (checkpoints, metrics.jsonl, eval.json, final/)
 *   <arm>/seed-<s>/untrained/  the same architecture and initialisation, not trained (the floor)
 *   <arm>/seed-<s>/emb_trained.arrow, emb_untrained.arrow
 *   <arm>/seed-<s>/done.json   what the seed's run measured (eval, tokens, throughput, wall time)
 *   <arm>/assess/              `cellfm assess` of all the arm's embeddings (metrics.json, report, figures)
 *   denoise/                   the denoising benchmark (held-out cells, their downsampled counts, baselines);
 *                              each count-predicting arm × seed's scores (trained, untrained) are in its done.json
 *   compare.json, report.md, report.html, figures/
 * ```
 * Re-running skips every finished piece (a file is written only when complete) and resumes an
 * interrupted training run from its newest checkpoint (`cellfm train --resume`, exact), so a long
 * comparison survives Ctrl-C or a crash and gives the same numbers as an uninterrupted one.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { initBackend, type BackendChoice } from "../backend.js";
import { openCounts } from "../data/open.js";
import { readTokenizedDataset, readTokenizedManifest } from "../data/tokenized.js";
import { embedToFile } from "../embed/run.js";
import { runAssessment } from "../assess/run.js";
import type { AssessmentResult } from "../assess/report.js";
import { buildModel } from "../model/factory.js";
import { copyGeneTables } from "../model/value-model.js";
import { readCheckpoint, writeCheckpoint } from "../model/checkpoint.js";
import { assertNoOverlap, assertWritable, setAside, settleSetAside, writeFileAtomic, writeOutputMarker } from "../io.js";
import { isOutputLockHeld, lockOutput, releaseOutputLock } from "../lock.js";
import { readMetricsRows } from "../train/output.js";
import { ENCODING_NAMES, planGenes, type TokenEncoding } from "../tokenize/geneformer.js";
import { tokenizeToDataset } from "../tokenize/run.js";
import { listCheckpoints } from "../train/checkpoints.js";
import type { TrainConfig } from "../train/config.js";
import { splitCells, train, trainingPlan, type EvalResult } from "../train/loop.js";
import { armDir, armTrainConfig, bottleneckCountsTokens, seedDir, tokensDir, type ArmConfig, type CompareConfig } from "./config.js";
import { readBenchmarkMatrices, runDenoiseBaselines, type DenoiseBaselines } from "./bench.js";
import { denoiseScore } from "./denoise.js";
import { predictCounts } from "./predict.js";
import { inputCeiling } from "./ceiling.js";
import { writeEmbeddings } from "../data/embeddings.js";
import { loadGeneformerDictionaries } from "../tokenize/dictionaries.js";
import { buildReport, type ArmSeedResult, type CompareResult } from "./report.js";

/** Options of {@link runCompare} (mirrors `cellfm compare`). */
export interface CompareRunOptions {
  config: CompareConfig;
  output: string;
  /** delete an existing output folder first. */
  force?: boolean;
  quiet?: boolean;
  /** data-parallel ranks for training (overrides training.workers of every arm). */
  workers?: number;
  backend?: BackendChoice;
  /** tests: stop the first training run after this many steps in this call, as Ctrl-C does. */
  stopAfterSteps?: number;
  /** where progress lines go (default stderr). */
  log?: (line: string) => void;
}

function readJson<T>(file: string): T | undefined {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as T) : undefined;
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x));
}

function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m` : `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

/** The parts of the configuration that every arm shares: a finished folder is reused only if they match. */
function sharedFingerprint(c: CompareConfig): Record<string, unknown> {
  return { data: c.data, assess: c.assess, denoise: c.denoise, embed: c.embed, backend: c.backend };
}

/**
 * Check that the output folder is new, or was made by this configuration (then finished pieces are
 * reused), before anything is written.
 * @throws Error naming the differing section or arm, or a foreign non-empty folder without --force.
 */
function prepareOutput(c: CompareConfig, out: string, force: boolean): void {
  assertNoOverlap(out, [{ path: c.data.input, label: `${c.source}: data.input` }], "--output");
  lockOutput(out, "compare");
  settleSetAside(out, compareHasResult, false); // an earlier --force run that was killed
  if (force && fs.existsSync(out)) {
    // --force replaces only a compare folder, and only cellfm's files; the previous comparison is
    // kept aside until the new one has a result (runCompare settles it)
    assertWritable(out, true, { command: "compare", kind: "dir" });
    setAside(out);
  }
  const marker = path.join(out, "compare-config.json");
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0) {
    const prev = readJson<{ shared: Record<string, unknown> }>(marker);
    if (!prev) throw new Error(`output folder ${out} exists and was not written by cellfm compare; choose another --output or pass --force`);
    for (const [k, v] of Object.entries(sharedFingerprint(c))) {
      if (stable(prev.shared[k]) !== stable(v)) {
        throw new Error(`${c.source}: ${k}: differs from the configuration ${out} was made with; pass --force to start over or choose another --output`);
      }
    }
  }
  for (const arm of c.arms) {
    const prev = readJson<ArmConfig & { seeds: number[] }>(path.join(armDir(out, arm.name), "arm.json"));
    if (prev && stable({ ...prev, seeds: undefined }) !== stable({ ...arm, seeds: undefined })) {
      throw new Error(`${c.source}: arm "${arm.name}": its configuration changed since ${armDir(out, arm.name)} was written; rename the arm, delete that folder, or pass --force`);
    }
  }
  fs.mkdirSync(out, { recursive: true });
  writeOutputMarker(out, "compare");
  writeFileAtomic(marker, JSON.stringify({ source: c.source, shared: sharedFingerprint(c), seeds: c.seeds, arms: c.arms.map((a) => a.name) }, null, 2) + "\n");
}

/** A comparison folder holds a result once one training run has a checkpoint or one arm × seed is done. */
function compareHasResult(dir: string): boolean {
  const walk = (d: string, depth: number): boolean => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name === "done.json" || (e.isDirectory() && /^(checkpoint-\d+|final)$/.test(e.name))) return true;
      if (e.isDirectory() && depth < 4 && walk(path.join(d, e.name), depth + 1)) return true;
    }
    return false;
  };
  return fs.existsSync(dir) && walk(dir, 0);
}

/** Check the data's obs columns before anything is tokenized or trained. */
async function checkData(c: CompareConfig): Promise<{ nCells: number }> {
  const src = await openCounts(c.data.input, { layer: c.data.layer, useRaw: c.data.use_raw });
  try {
    const cols = Object.keys(src.obs.columns);
    for (const [key, col] of [["data.label", c.data.label], ["data.batch", c.data.batch]] as const) {
      if (col !== undefined && !cols.includes(col)) {
        throw new Error(`${c.source}: ${key}: column "${col}" is not in ${c.data.input} (obs columns: ${cols.join(", ") || "none"})`);
      }
    }
    return { nCells: src.nCells };
  } finally {
    src.close();
  }
}

/** One arm × seed to run, with its training configuration and length. */
interface Job {
  arm: ArmConfig;
  seed: number;
  dir: string;
  train: TrainConfig;
  totalSteps: number;
}

/**
 * Run (or continue) the comparison and write its report.
 * @returns the aggregated result (also `<output>/compare.json`); `interrupted` when a training run
 *   was stopped (Ctrl-C or `stopAfterSteps`): re-run the same command to continue.
 * @throws Error (before anything trains) for a missing label/batch column, a token budget smaller
 *   than one optimizer step, or an output folder made by a different configuration.
 */
export async function runCompare(o: CompareRunOptions): Promise<CompareResult & { interrupted: boolean }> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const locked = isOutputLockHeld(o.output);
  try {
    return await runCompareIn(o);
  } finally {
    // a previous comparison replaced with --force: removed once the new one has a result, else put back
    if (isOutputLockHeld(o.output)) for (const l of settleSetAside(path.resolve(o.output), compareHasResult, true)) log(`compare: ${l}`);
    if (!locked) releaseOutputLock(o.output);
  }
}

async function runCompareIn(o: CompareRunOptions): Promise<CompareResult & { interrupted: boolean }> {
  const c = o.config;
  const out = path.resolve(o.output);
  const log = o.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const say = (s: string) => {
    if (!o.quiet) log(s);
  };
  const t0 = Date.now();
  await checkData(c);
  prepareOutput(c, out, o.force ?? false);
  const backend = await initBackend(o.backend ?? c.backend);
  const carry = [c.data.label, ...(c.data.batch && c.data.batch !== c.data.label ? [c.data.batch] : [])];

  // 1. tokens of every arm (skipped when complete), then every arm × seed's plan: all checked before training
  for (const arm of c.arms) {
    const dir = armDir(out, arm.name);
    fs.mkdirSync(dir, { recursive: true });
    writeFileAtomic(path.join(dir, "arm.json"), JSON.stringify({ ...arm, seeds: c.seeds }, null, 2) + "\n");
    // arms with the same encoding and tokenizer options share one tokenization
    const tokens = tokensDir(out, arm);
    if (!fs.existsSync(path.join(tokens, "manifest.json"))) {
      say(`compare: tokenizing for arm ${arm.name} (encoding ${arm.encoding}, ${path.relative(out, tokens)})`);
      await tokenizeToDataset({
        input: c.data.input,
        output: tokens,
        modelVersion: c.data.model_version,
        carry,
        layer: c.data.layer,
        useRaw: c.data.use_raw,
        force: true,
        quiet: true,
        encoding: arm.encoding as TokenEncoding,
        nBins: arm.tokenize.n_bins,
        seed: arm.tokenize.seed,
        topGenes: arm.tokenize.top_genes,
      });
    }
    // a value arm with the bottleneck on --top-genes tokens decodes counts from the rank tokens
    const bnTokens = bottleneckCountsTokens(arm, out);
    if (bnTokens && !fs.existsSync(path.join(bnTokens, "manifest.json"))) {
      say(`compare: tokenizing rank tokens for the bottleneck targets of arm ${arm.name} (${path.relative(out, bnTokens)})`);
      await tokenizeToDataset({ input: c.data.input, output: bnTokens, modelVersion: c.data.model_version, carry, layer: c.data.layer, useRaw: c.data.use_raw, force: true, quiet: true, encoding: "rank" });
    }
    const m = readTokenizedManifest(tokens);
    const want = ENCODING_NAMES[arm.encoding as TokenEncoding];
    if (want && m.encoding !== want) throw new Error(`arm "${arm.name}": ${tokens} holds encoding ${m.encoding}, expected ${want}`);
  }
  let tokenMedian: Float64Array | undefined;
  const jobs: Job[] = [];
  const planErrors: string[] = [];
  for (const arm of c.arms) {
    for (const seed of c.seeds) {
      const tc = armTrainConfig(c, arm, seed, out);
      if (o.workers !== undefined) tc.training.workers = o.workers;
      try {
        jobs.push({ arm, seed, dir: seedDir(out, arm.name, seed), train: tc, totalSteps: trainingPlan(tc).totalSteps });
      } catch (e) {
        planErrors.push((e as Error).message);
      }
    }
  }
  if (planErrors.length) throw new Error([...new Set(planErrors)].join("\n"));

  // the denoising benchmark's held-out cells and baselines (the training runs' validation cells, never
  // trained on), built before training so that every arm × seed is scored as soon as it is trained
  let denoise: DenoiseBaselines;
  let heldOutIds: string[]; // the training runs' validation cells: the linear probe scores them
  {
    const src = await openCounts(c.data.input, { layer: c.data.layer, useRaw: c.data.use_raw });
    try {
      // the split is over the tokenized cells (a cell without known genes is not tokenized): map its ids to rows
      const ids = readTokenizedDataset(jobs[0].train.data.tokens).cellIds;
      const { val } = splitCells(ids.length, c.data.val_fraction, c.data.split_seed);
      heldOutIds = Array.from(val, (i) => ids[i]);
      const row = new Map(src.obs.index.map((id, i) => [id, i]));
      const rows = Array.from(val, (i) => row.get(ids[i])).filter((r): r is number => r !== undefined);
      const plan = planGenes(src.var, loadGeneformerDictionaries(c.data.model_version), { file: c.data.input });
      tokenMedian = plan.tokenMedian;
      denoise = runDenoiseBaselines(src, rows, c.denoise, path.join(out, "denoise"), say, plan.colToken);
    } finally {
      src.close();
    }
  }
  const bench = readBenchmarkMatrices(path.join(out, "denoise"), denoise);

  // 2. train, untrained floor, embed, denoising scores: per arm × seed
  const budget = Number(jobs[0]?.train.training.max_tokens ?? 0);
  const isDone = (j: Job) => fs.existsSync(path.join(j.dir, "done.json"));
  const todo = jobs.filter((j) => !isDone(j));
  let tokensTrainedNow = 0;
  let secondsTrainingNow = 0;
  let interrupted = false;
  let stopBudget = o.stopAfterSteps;
  say(
    `compare: ${c.arms.length} arm(s) × ${c.seeds.length} seed(s), budget ${budget.toLocaleString("en-US")} tokens each; ` +
      `${jobs.length - todo.length} finished, ${todo.length} to run; backend ${backend.name}`,
  );
  for (let ji = 0; ji < jobs.length; ji++) {
    const j = jobs[ji];
    if (isDone(j)) continue;
    fs.mkdirSync(j.dir, { recursive: true });
    const trainDir = j.train.output.dir;
    const finished = fs.existsSync(path.join(trainDir, "eval.json")) && fs.existsSync(path.join(trainDir, "final"));
    const timingFile = path.join(j.dir, "timing.json");
    // train_s: every training attempt's wall time, saved as it goes (at most a second is lost to a kill -9)
    const timing = readJson<{ train_s: number; attempts?: number }>(timingFile) ?? { train_s: 0 };
    if (!finished) {
      const resume = fs.existsSync(trainDir) && listCheckpoints(trainDir).length > 0;
      const remainingJobs = todo.filter((x) => jobs.indexOf(x) > ji).length;
      const tag = `arm ${c.arms.indexOf(j.arm) + 1}/${c.arms.length} ${j.arm.name} · seed ${j.seed}`;
      say(`compare [${tag}]: ${resume ? "resuming" : "training"} ${j.totalSteps} steps`);
      const start = Date.now();
      const before = timing.train_s;
      timing.attempts = (timing.attempts ?? 0) + 1;
      let lastSaved = start;
      let lastPrint = 0;
      // throughput of the comparison so far: this call's steps after its first, plus earlier runs
      let first: { tokens: number; t: number } | undefined;
      let last = { tokens: 0, t: 0 };
      const r = await train(j.train, {
        resume,
        force: !resume,
        quiet: true,
        backend: o.backend,
        stopAfter: stopBudget,
        onStep: (m) => {
          const now = Date.now();
          if (now - lastSaved >= 1000) {
            lastSaved = now;
            writeFileAtomic(timingFile, JSON.stringify({ ...timing, train_s: before + (now - start) / 1000 }) + "\n");
          }
          first ??= { tokens: m.tokens, t: now };
          last = { tokens: m.tokens, t: now };
          if (now - lastPrint < 5000 && m.step !== j.totalSteps) return;
          lastPrint = now;
          const tok = tokensTrainedNow + (m.tokens - first.tokens);
          const secs = secondsTrainingNow + (now - first.t) / 1000;
          const left = Math.max(0, budget - m.tokens) + remainingJobs * budget;
          const eta = tok > 0 && secs > 0 ? fmtDuration(left / (tok / secs)) : "?";
          say(
            `compare [${tag}] step ${m.step}/${j.totalSteps} · tokens ${m.tokens.toLocaleString("en-US")}/${budget.toLocaleString("en-US")} · loss ${m.loss.toFixed(3)} · ` +
              `${Math.round(m.tokens_per_s)} tok/s · whole comparison ETA ${eta} (training)`,
          );
        },
      });
      if (first) {
        tokensTrainedNow += last.tokens - first.tokens;
        secondsTrainingNow += (last.t - first.t) / 1000;
      }
      const secs = (Date.now() - start) / 1000;
      timing.train_s = before + secs;
      writeFileAtomic(timingFile, JSON.stringify(timing) + "\n");
      if (stopBudget !== undefined) stopBudget = undefined;
      if (r.interrupted) {
        interrupted = true;
        say(`compare: interrupted in arm ${j.arm.name} seed ${j.seed} at step ${r.step}/${r.totalSteps}; run the same command again to continue`);
        break;
      }
    }
    // the untrained floor: the same architecture and the same seeded initialisation training started from
    const untrained = path.join(j.dir, "untrained");
    if (!fs.existsSync(path.join(untrained, "config.json"))) {
      const trained = readCheckpoint(path.join(trainDir, "final"));
      // the same model class as the trained arm (any encoding x objective), fresh weights from the run's seed
      const model = buildModel(trained.config, trained.model.spec, { seed: j.seed });
      copyGeneTables(trained.model, model); // gene vectors / genomic positions come from files, not the initialiser
      writeCheckpoint(untrained, { model, cellfm: { ...trained.cellfm, untrained_floor: true } }, { force: true });
      model.dispose();
      trained.model.dispose();
    }
    for (const [which, ck] of [["trained", path.join(trainDir, "final")], ["untrained", untrained]] as const) {
      const file = path.join(j.dir, `emb_${which}.arrow`);
      if (fs.existsSync(file)) continue;
      await embedToFile({ checkpoint: ck, input: j.train.data.tokens, output: file, layer: c.embed.layer, backend: o.backend ?? c.backend, quiet: true, log: () => undefined });
    }
    let scores: ArmSeedResult["denoise"];
    if (j.arm.predictsCounts) {
      const score = (ck: string) => {
        const loaded = readCheckpoint(ck);
        try {
          const m = loaded.model;
          const maxLen = Math.min(j.train.data.max_length ?? m.config.max_position_embeddings, m.config.max_position_embeddings);
          const pred = predictCounts(m, m.spec.encoding, bench.noisy, {
            maxLength: maxLen,
            geneTokens: Int32Array.from(denoise.tokens),
            tokenMedian,
            topGenes: j.arm.tokenize.top_genes,
            seed: c.denoise.seed,
          });
          return denoiseScore(bench.full, bench.noisy, pred);
        } finally {
          loaded.model.dispose();
        }
      };
      scores = { trained: score(path.join(trainDir, "final")), untrained: score(untrained) };
      say(
        `compare: arm ${j.arm.name} seed ${j.seed} denoising: improvement over the downsampled input ${scores.trained.improvement.toFixed(4)} ` +
          `(untrained ${scores.untrained.improvement.toFixed(4)}${scores.untrained.improvement > 0 ? ", ABOVE 0: the benchmark's sanity check fails" : ", <= 0 as it must be"})`,
      );
    }
    const ev = readJson<EvalResult>(path.join(trainDir, "eval.json"))!;
    const rows = readMetricsRows(path.join(trainDir, "metrics.jsonl"), log);
    const tokens = rows.reduce((m, r) => Math.max(m, r.tokens ?? 0), 0);
    const done: ArmSeedResult = {
      arm: j.arm.name,
      seed: j.seed,
      steps: ev.step,
      tokens,
      eval: ev,
      train_seconds: timing.train_s,
      ...(timing.attempts !== undefined && timing.attempts > 1 ? { train_attempts: timing.attempts } : {}),
      tokens_per_s: tokens / Math.max(timing.train_s, 1e-9),
      ...(scores ? { denoise: scores } : {}),
    };
    writeFileAtomic(path.join(j.dir, "done.json"), JSON.stringify(done, null, 2) + "\n");
    say(`compare: arm ${j.arm.name} seed ${j.seed} done: held-out loss ${ev.model_loss.toFixed(4)} vs baseline ${ev.baseline_loss.toFixed(4)}, ${tokens.toLocaleString("en-US")} tokens, ${fmtDuration(timing.train_s)}`);
  }
  if (interrupted) {
    return { ...buildEmpty(c, out), interrupted: true };
  }

  // 3. assessment per arm: every seed's trained and untrained embeddings, next to HVG + PCA
  const assessments: Record<string, AssessmentResult> = {};
  for (const arm of c.arms) {
    const dir = path.join(armDir(out, arm.name), "assess");
    const metricsFile = path.join(dir, "metrics.json");
    // the arm's input ceiling: its context genes as a bag → PCA50 (seed-independent)
    const ceilingFile = path.join(armDir(out, arm.name), "input_ceiling.arrow");
    if (!fs.existsSync(ceilingFile)) {
      const j = jobs.find((x) => x.arm === arm)!;
      const maxLength = Math.min(j.train.data.max_length ?? Infinity, Number(j.train.model.max_position_embeddings ?? Infinity));
      const ceil = inputCeiling(j.train.data.tokens, { maxLength, seed: c.assess.seed });
      const ds = readTokenizedDataset(j.train.data.tokens);
      writeEmbeddings(ceilingFile, { cellIds: ceil.cellIds, dim: ceil.dim, data: ceil.data, obs: ds.obs, meta: { what: `input ceiling of arm ${arm.name}: its context genes as a bag (${ceil.nGenes} genes) → PCA${ceil.dim}`, source: ds.manifest.source?.path ?? "", source_sha256: ds.manifest.source?.sha256 ?? "" } }, { force: true });
    }
    const names = [...c.seeds.flatMap((s) => [`${arm.name}_s${s}`, `${arm.name}_s${s}_untrained`]), `${arm.name}_input`];
    const prev = readJson<AssessmentResult>(metricsFile);
    if (prev && stable(prev.embeddings.map((e) => e.name)) === stable(names)) {
      assessments[arm.name] = prev;
      continue;
    }
    say(`compare: assessing arm ${arm.name} (${names.length} embeddings + HVG + PCA)`);
    assessments[arm.name] = await runAssessment({
      input: c.data.input,
      embeddings: [...c.seeds.flatMap((s) => [path.join(seedDir(out, arm.name, s), "emb_trained.arrow"), path.join(seedDir(out, arm.name, s), "emb_untrained.arrow")]), ceilingFile],
      embeddingNames: names,
      label: c.data.label,
      batch: c.data.batch,
      output: dir,
      minCells: c.assess.min_cells,
      perType: c.assess.per_type ?? c.assess.min_cells,
      nHvg: c.assess.n_hvg,
      k: c.assess.k,
      seed: c.assess.seed,
      layer: c.data.layer,
      useRaw: c.data.use_raw,
      threads: c.assess.threads,
      umapEpochs: c.assess.umap_epochs,
      backend: o.backend ?? c.backend,
      heldOutCells: heldOutIds!,
      force: true,
      quiet: true,
    });
  }

  // 5. the report
  const results: ArmSeedResult[] = jobs.map((j) => readJson<ArmSeedResult>(path.join(j.dir, "done.json"))!);
  const curves = jobs.map((j) => ({
    arm: j.arm.name,
    seed: j.seed,
    rows: fs
      .readFileSync(path.join(j.train.output.dir, "metrics.jsonl"), "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, number>),
  }));
  const result = await buildReport({ config: c, output: out, results, assessments, curves, denoise, wallSeconds: (Date.now() - t0) / 1000 });
  say(`compare: report ${path.join(out, "report.md")} (and report.html, compare.json)`);
  return { ...result, interrupted: false };
}

function buildEmpty(c: CompareConfig, out: string): CompareResult {
  return { config: c.source, output: out, arms: [], baseline: undefined, denoise: undefined, reading: [] };
}
