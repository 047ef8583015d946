/**
 * File-system helpers shared by every stage: never overwrite a user's output without `force`,
 * and write files/folders atomically (temporary name, then rename), so a crash never leaves a
 * half-written result under the final name.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** The marker file cellfm writes into every output folder: `{ "command", "cellfm_version", "created" }`. */
export const OUTPUT_MARKER = ".cellfm.json";

/** Temporary names of cellfm writes: `<target>.tmp-<pid>-<ms>` (being written) and `<target>.old-<pid>-<ms>`. */
const TEMP_RE = /^(.*)\.(tmp|old)-(\d+)-(\d+)$/;

/** An input of a command, for the overlap check: its path and how the user gave it (e.g. `--input`). */
export interface NamedPath {
  path: string;
  label: string;
}

/** What {@link assertWritable} checks besides existence. */
export interface OutputCheck {
  /** The cellfm command writing it (`tokenize`, `train`, `assess`, `checkpoint`, ...): `--force` replaces only a folder it wrote. */
  command?: string;
  /** The command's inputs: the output may not be, contain or lie inside any of them. */
  inputs?: NamedPath[];
  /** The output is a folder or a single file (default: either). */
  kind?: "dir" | "file";
}

/** Write the {@link OUTPUT_MARKER} of `command` into folder `dir`. */
export function writeOutputMarker(dir: string, command: string): void {
  let version = "unknown";
  try {
    version = JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")).version ?? version;
  } catch {
    /* keep "unknown" */
  }
  fs.writeFileSync(path.join(dir, OUTPUT_MARKER), JSON.stringify({ command, cellfm_version: version, created: new Date().toISOString() }) + "\n");
}

function readJsonOr(file: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, "utf8"));
    return typeof v === "object" && v !== null ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The cellfm command that wrote folder `dir`: from its {@link OUTPUT_MARKER}, else (folders written
 * before the marker existed) from its signature files: a tokenized dataset's `manifest.json`
 * (`format: cellfm-tokenized`), a training run's `run.json` + `metrics.jsonl`, an assessment's
 * `metrics.json` + `report.md`, a checkpoint's `config.json` with a `cellfm` block.
 * @returns the command, or undefined when nothing says cellfm wrote it
 */
export function outputWrittenBy(dir: string): string | undefined {
  const marker = readJsonOr(path.join(dir, OUTPUT_MARKER));
  if (marker && typeof marker.command === "string") return marker.command;
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  if (readJsonOr(path.join(dir, "manifest.json"))?.format === "cellfm-tokenized") return "tokenize";
  if (has("run.json") && has("metrics.jsonl")) return "train";
  if (has("metrics.json") && has("report.md")) return "assess";
  if (readJsonOr(path.join(dir, "config.json"))?.cellfm) return "checkpoint";
  if (has("compare-config.json")) return "compare";
  return undefined;
}

/** `p` resolved through symbolic links as far as it exists (the rest appended). */
function canonicalPath(p: string): string {
  let head = path.resolve(p);
  const rest: string[] = [];
  while (!fs.existsSync(head)) {
    const up = path.dirname(head);
    if (up === head) break;
    rest.unshift(path.basename(head));
    head = up;
  }
  return path.join(fs.existsSync(head) ? fs.realpathSync(head) : head, ...rest);
}

function within(child: string, parent: string): boolean {
  const r = path.relative(parent, child);
  return r === "" || (!r.startsWith("..") && !path.isAbsolute(r));
}

/**
 * Refuse an output that is, contains or lies inside one of the command's inputs (with or without
 * `--force`: replacing it would destroy the input).
 * @throws Error naming both paths
 */
export function assertNoOverlap(output: string, inputs: NamedPath[], outputLabel = "output"): void {
  const o = canonicalPath(output);
  for (const inp of inputs) {
    const i = canonicalPath(inp.path);
    const how = o === i ? "is" : within(i, o) ? "contains" : within(o, i) ? "lies inside" : undefined;
    if (how) throw new Error(`${outputLabel} ${output} ${how} the input ${inp.path} (${inp.label}); choose an output outside the inputs`);
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true; // this process may be writing it right now
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Clean what killed or failed writes of `target` left beside it: `<target>.tmp-<pid>-*` of a process
 * that no longer runs is removed; `<target>.old-<pid>-*` (the previous result, set aside while a
 * `--force` replacement was renamed into place) is removed when `target` exists, and renamed back
 * to `target` when the replacement never arrived. Writes of running processes are left alone.
 * @returns the paths removed or restored
 */
export function removeStaleTemps(target: string): string[] {
  const abs = path.resolve(target);
  const parent = path.dirname(abs), base = path.basename(abs);
  if (!fs.existsSync(parent)) return [];
  const done: string[] = [];
  for (const name of fs.readdirSync(parent)) {
    const m = TEMP_RE.exec(name);
    if (!m || m[1] !== base || pidAlive(Number(m[3]))) continue;
    const p = path.join(parent, name);
    if (m[2] === "old" && !fs.existsSync(abs)) fs.renameSync(p, abs);
    else fs.rmSync(p, { recursive: true, force: true });
    done.push(p);
  }
  return done;
}

/** {@link removeStaleTemps} for every entry of folder `dir` (e.g. the checkpoints of a run). */
export function removeStaleTempsIn(dir: string): string[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return [];
  const targets = new Set<string>();
  for (const name of fs.readdirSync(dir)) {
    const m = TEMP_RE.exec(name);
    if (m) targets.add(path.join(dir, m[1]));
  }
  return [...targets].flatMap((t) => removeStaleTemps(t));
}

/**
 * Why `--force` may not replace the existing `target`, or undefined when it may: a file output
 * replaces one file; a folder output replaces only an empty folder or one the same cellfm command
 * wrote ({@link outputWrittenBy}), never a user's folder.
 */
function forceRefusal(target: string, check: OutputCheck): string | undefined {
  const st = fs.statSync(target);
  if (!st.isDirectory()) return check.kind === "dir" ? `${target} is a file, not an output folder of cellfm; move it or choose another output` : undefined;
  if (check.kind === "file") return `${target} is a folder; --force replaces a file output only`;
  const names = fs.readdirSync(target);
  if (names.length === 0) return undefined;
  const by = outputWrittenBy(target);
  if (!by) {
    const shown = names.slice(0, 3).join(", ") + (names.length > 3 ? `, … (${names.length} entries)` : "");
    return `--force replaces only a folder that cellfm wrote, and ${target} is not one (no ${OUTPUT_MARKER}; it holds ${shown}); move it or choose another output`;
  }
  if (check.command && by !== check.command) {
    return `--force: ${target} was written by cellfm ${by}, not ${check.command}; it is not replaced — choose another output`;
  }
  return undefined;
}

/**
 * Check that the command may write `target` (call before any work): an output that is, contains or
 * lies inside an input is refused ({@link assertNoOverlap}); leftovers of killed writes of `target`
 * are cleaned ({@link removeStaleTemps}); an existing `target` is refused without `force`, and with
 * `force` replaced only as {@link forceRefusal} allows (the replacement happens once the new output
 * is complete, see {@link commitDir}). Creates the parent folder.
 * @throws Error naming the path(s) and what to do
 */
export function assertWritable(target: string, force = false, check: OutputCheck = {}): void {
  if (check.inputs) assertNoOverlap(target, check.inputs);
  removeStaleTemps(target);
  if (fs.existsSync(target)) {
    if (!force) throw new Error(`output ${target} already exists; pass --force to replace it`);
    const why = forceRefusal(target, check);
    if (why) throw new Error(why);
  }
  const parent = path.dirname(path.resolve(target));
  if (!fs.existsSync(parent)) fs.mkdirSync(parent, { recursive: true });
}

/**
 * Create a fresh temporary sibling folder for `target` (same file system, so rename is atomic);
 * with `command`, it holds that command's {@link OUTPUT_MARKER} from the start.
 */
export function tempDirFor(target: string, command?: string): string {
  const abs = path.resolve(target);
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp, { recursive: true });
  if (command) writeOutputMarker(tmp, command);
  return tmp;
}

/**
 * Move a completed temporary folder to `target`. With `force`, an existing `target` is replaced
 * (if {@link assertWritable}'s rules allow it, checked again here); the old one is removed only
 * after the new one is in place under a side name.
 */
export function commitDir(tmp: string, target: string, force = false, check: OutputCheck = {}): void {
  const abs = path.resolve(target);
  if (fs.existsSync(abs)) {
    if (!force) throw new Error(`output ${target} already exists; pass --force to replace it`);
    const why = forceRefusal(abs, { kind: "dir", ...check });
    if (why) throw new Error(why);
    const old = `${abs}.old-${process.pid}-${Date.now()}`;
    fs.renameSync(abs, old);
    fs.renameSync(tmp, abs);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(tmp, abs);
  }
}

/** Write one file atomically (temporary file in the same folder, fsync, rename). */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  const abs = path.resolve(target);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  const fd = fs.openSync(tmp, "w");
  try {
    if (typeof data === "string") fs.writeSync(fd, data);
    else fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, abs);
}

/** sha256 (hex) of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Path of a bundled resource (data/, configs/) relative to the package root, from src/ or dist/. */
export function packagePath(...parts: string[]): string {
  const here = path.dirname(new URL(import.meta.url).pathname);
  return path.resolve(here, "..", ...parts);
}
