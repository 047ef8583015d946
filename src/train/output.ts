/**
 * The output folder of a training run (`output.dir`): taken with an exclusive lock for the whole
 * run (src/lock.ts), leftovers of killed runs cleaned, and `--force` that keeps the previous run
 * until the new one has a checkpoint (issue 20 §1); `metrics.jsonl` read back with a torn last line
 * (a crash or a full disk in the middle of a row) dropped with a warning (issue 20 §2).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assertNoOverlap, assertWritable, type NamedPath, OUTPUT_MARKER, removeStaleTempsIn, setAside, settleSetAside, writeOutputMarker } from "../io.js";
import { lockOutput } from "../lock.js";
import { listCheckpoints } from "./checkpoints.js";

/** What a run writes before its first checkpoint (with temporary folders of checkpoint writes). */
const RUN_START_FILES = new Set(["run.json", "metrics.jsonl", OUTPUT_MARKER]);

/**
 * Remove what a run that stopped before its first checkpoint left in `dir` (crash, kill -9, a
 * diverged loss): `run.json`, `metrics.jsonl` and half-written `*.tmp-*` folders, only when that is
 * all there is. Such a folder holds no result, so it must not block running the same command again.
 * Only call it under the folder's lock ({@link prepareOutputDir}): a running run looks the same.
 * @returns true when `dir` held such leftovers (now removed)
 */
export function removeAbortedStart(dir: string): boolean {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return false;
  const names = fs.readdirSync(dir);
  if (names.length === 0 || !names.includes("run.json")) return false;
  if (!names.every((n) => RUN_START_FILES.has(n) || /\.tmp-\d+-\d+$/.test(n))) return false;
  for (const n of names) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
  return true;
}

/** A run folder holds a result once it has a checkpoint. */
function hasCheckpoint(dir: string): boolean {
  try {
    return listCheckpoints(dir).length > 0;
  } catch {
    return true; // a final/ without a readable trainer state: keep it rather than restore over it
  }
}

/** Check that run folder `dir` does not overlap the run's inputs, then take its lock (held until the run ends). */
export function lockRunDir(dir: string, inputs: NamedPath[]): void {
  assertNoOverlap(dir, inputs, "output.dir");
  lockOutput(dir, "train");
}

/**
 * Make `dir` ready for a run (before anything is written): lock it against other processes; settle
 * a `--force` replacement a killed run left (the previous run put back when the new one had no
 * checkpoint); clean half-written checkpoints and the leftovers of a run that stopped before its
 * first checkpoint; refuse an existing run without `--resume`/`--force`; with `--force`, set the
 * previous run aside ({@link setAside}) — {@link finishOutputDir} removes it once the new run has a
 * checkpoint, or restores it.
 * @throws Error naming the folder (locked by another run, existing without --force, holding files
 *   cellfm did not write, overlapping the input)
 */
export function prepareOutputDir(dir: string, opts: { resume?: boolean; force?: boolean }, say: (s: string) => void, inputs: NamedPath[]): void {
  lockRunDir(dir, inputs);
  for (const l of settleSetAside(dir, hasCheckpoint, false)) say(`note: ${l} (an earlier --force run was stopped)`);
  removeStaleTempsIn(dir); // half-written checkpoints of a killed run
  if (!opts.resume && removeAbortedStart(dir)) {
    say(`note: ${dir} held only the leftovers of a run that stopped before its first checkpoint (run.json, metrics.jsonl); removed them`);
  }
  const exists = fs.existsSync(dir);
  const nonEmpty = exists && fs.readdirSync(dir).length > 0;
  if (opts.resume) {
    if (!nonEmpty) throw new Error(`--resume: output folder ${dir} has no checkpoint to resume from`);
    return;
  }
  if (nonEmpty) {
    if (!opts.force) {
      throw new Error(`output folder ${dir} already exists and is not empty; pass --resume to continue or --force to start over`);
    }
    assertWritable(dir, true, { command: "train", kind: "dir" }); // --force replaces only a training run's folder, and only cellfm's files
    setAside(dir);
  }
  fs.mkdirSync(dir, { recursive: true });
  writeOutputMarker(dir, "train");
}

/**
 * After a run on `dir` ended (returned, stopped by a signal, or failed): a previous run that
 * `--force` set aside is removed when the new run has a checkpoint, else put back.
 * @returns notes for the log
 */
export function finishOutputDir(dir: string): string[] {
  return settleSetAside(dir, hasCheckpoint, true);
}

/**
 * Rows of a run's `metrics.jsonl`. A last line that is not complete JSON (the run was killed or the
 * disk filled while it was written) is dropped with a `warn`ing; a bad line elsewhere is an error.
 * @throws Error naming the file and the line
 */
export function readMetricsRows(file: string, warn: (s: string) => void): Record<string, number>[] {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const rows: Record<string, number>[] = [];
  let last = lines.length - 1;
  while (last >= 0 && !lines[last].trim()) last--;
  for (let i = 0; i <= last; i++) {
    if (!lines[i].trim()) continue;
    try {
      rows.push(JSON.parse(lines[i]) as Record<string, number>);
    } catch {
      if (i === last) {
        warn(`warning: ${file}: dropped its last line ${i + 1}, which is incomplete (the run was stopped or the disk filled while it was written)`);
        break;
      }
      throw new Error(`${file}: line ${i + 1} is not valid JSON (the file is corrupt); fix or remove that line`);
    }
  }
  return rows;
}
