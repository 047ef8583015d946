/**
 * File-system helpers shared by every stage: never overwrite a user's output without `force`,
 * and write files/folders atomically (temporary name, then rename), so a crash never leaves a
 * half-written result under the final name.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { lockOutput } from "./lock.js";

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
  /** Take the exclusive lock on the output for this command ({@link lockOutput}), held until the command ends. */
  lock?: string;
}

/** Write the {@link OUTPUT_MARKER} of `command` into folder `dir`. */
export function writeOutputMarker(dir: string, command: string): void {
  let version = "unknown";
  try {
    version = JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")).version ?? version;
  } catch {
    /* keep "unknown" */
  }
  writeFileAtomic(path.join(dir, OUTPUT_MARKER), JSON.stringify({ command, cellfm_version: version, created: new Date().toISOString() }) + "\n");
}

/** Every file under `dir`, as paths relative to it with `/` separators (sorted). */
function listFiles(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

/**
 * What a folder written piece by piece (not committed at once) may hold besides sub-folders with
 * their own {@link OUTPUT_MARKER}: relative paths by command. A folder committed at once records
 * its exact files in its marker instead (`files`, see {@link commitDir}).
 */
const PROGRESSIVE_FILES: Record<string, RegExp[]> = {
  train: [/^(run\.json|metrics\.jsonl|eval\.json)$/],
  compare: [
    /^(compare-config|compare)\.json$/,
    /^report\.(md|html)$/,
    /^figures\/[^/]+\.(svg|png)$/,
    /^denoise\/[^/]+$/,
    /^[^/]+\/arm\.json$/,
    /^[^/]+\/seed-\d+\/(timing|done)\.json$/,
    /^[^/]+\/seed-\d+\/emb_(trained|untrained)\.arrow$/,
  ],
};

/**
 * Files under cellfm output folder `dir` that cellfm did not write (a user's notes, a notebook):
 * not in the marker's `files` list of a folder committed at once, not of the kinds a piece-by-piece
 * writer ({@link PROGRESSIVE_FILES}) writes, and not leftovers of cellfm's temporary writes.
 * Sub-folders with their own marker are checked against theirs. A folder written before markers
 * recorded their files (no `files`, not piece-by-piece) cannot be told apart and yields none.
 * @returns paths relative to `dir`
 */
export function foreignFiles(dir: string, prefix = ""): string[] {
  const here = path.join(dir, prefix);
  const marker = readJsonOr(path.join(here, OUTPUT_MARKER));
  const listed = Array.isArray(marker?.files) ? new Set(marker.files as string[]) : undefined;
  const patterns = PROGRESSIVE_FILES[String(marker?.command ?? outputWrittenBy(here) ?? "")];
  if (!listed && !patterns) return [];
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(here, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (TEMP_RE.test(e.name) || /\.cellfm-lock(\.|$)/.test(e.name) || (!rel && e.name === OUTPUT_MARKER)) continue;
      if (e.isDirectory()) {
        if (fs.existsSync(path.join(here, r, OUTPUT_MARKER))) out.push(...foreignFiles(here, r));
        else walk(r);
      } else if (!(listed?.has(r) || patterns?.some((p) => p.test(r)))) out.push(r);
    }
  };
  walk("");
  return out.map((r) => (prefix ? `${prefix}/${r}` : r));
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
  const foreign = foreignFiles(target);
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 5).join(", ") + (foreign.length > 5 ? `, … (${foreign.length} files)` : "");
    return `--force: ${target} holds files cellfm did not write (${shown}); move them out first — --force never deletes what cellfm did not write`;
  }
  return undefined;
}

/**
 * Check that the command may write `target` (call before any work): an output that is, contains or
 * lies inside an input is refused ({@link assertNoOverlap}); with `check.lock`, the output is locked
 * against other cellfm processes ({@link lockOutput}); leftovers of killed writes of `target`
 * are cleaned ({@link removeStaleTemps}); an existing `target` is refused without `force`, and with
 * `force` replaced only as {@link forceRefusal} allows (the replacement happens once the new output
 * is complete, see {@link commitDir}). Creates the parent folder.
 * @throws Error naming the path(s) and what to do
 */
export function assertWritable(target: string, force = false, check: OutputCheck = {}): void {
  if (check.inputs) assertNoOverlap(target, check.inputs);
  if (check.lock) lockOutput(target, check.lock);
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

/** Record in the {@link OUTPUT_MARKER} of a completed folder the files it holds (what `--force` may later delete). */
function recordFiles(dir: string): void {
  const file = path.join(dir, OUTPUT_MARKER);
  const marker = readJsonOr(file);
  if (!marker) return;
  const files = listFiles(dir).filter((f) => f !== OUTPUT_MARKER && !TEMP_RE.test(path.basename(f)));
  writeFileAtomic(file, JSON.stringify({ ...marker, files }) + "\n");
}

/**
 * Move a completed temporary folder to `target`. With `force`, an existing `target` is replaced
 * (if {@link assertWritable}'s rules allow it, checked again here); the old one is removed only
 * after the new one is in place under a side name.
 */
export function commitDir(tmp: string, target: string, force = false, check: OutputCheck = {}): void {
  const abs = path.resolve(target);
  recordFiles(tmp);
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

/** What a file-system error code means, for a user (one list: {@link fsErrorMessage} and the CLI use it). */
export const FS_ERRORS: Record<string, string> = {
  EACCES: "permission denied (EACCES): this user may not read or write it; check its permissions or choose another path",
  EPERM: "operation not permitted (EPERM); check its permissions or choose another path",
  ENOTDIR: "a part of this path is a file, not a folder (ENOTDIR)",
  EISDIR: "is a folder where a file was expected (EISDIR)",
  ENOENT: "no such file or folder (ENOENT)",
  ENOSPC: "no space left on the device (ENOSPC); free some space and run again (nothing was replaced)",
  EDQUOT: "disk quota exceeded (EDQUOT); free some space and run again (nothing was replaced)",
  EFBIG: "file too large for this file system (EFBIG)",
  EIO: "input/output error (EIO): the device failed; nothing was replaced",
  EROFS: "the file system is read-only (EROFS); choose another path",
  EMFILE: "too many open files (EMFILE)",
};

/** `p` as shown to a user: a temporary segment `<name>.tmp-<pid>-<ms>` is shown as its final `<name>`. */
export function shownPath(p: string): string {
  return p.replace(/\.tmp-\d+-\d+(?=[/\\]|$)/g, "");
}

/**
 * A file-system error of a write or read of `file` as one line naming the (final) path and the
 * problem, e.g. `out.arrow: no space left on the device (ENOSPC); ...`; the errno code is kept.
 */
export function fsErrorMessage(e: unknown, file: string): Error {
  const err = e as NodeJS.ErrnoException;
  const code = typeof err?.code === "string" ? err.code : undefined;
  const what = code && code in FS_ERRORS ? FS_ERRORS[code] : (err?.message ?? String(e)).split("\n")[0];
  const out = new Error(`${shownPath(file)}: ${what}`);
  if (code) (out as NodeJS.ErrnoException).code = code;
  return out;
}

/**
 * An error of a library that wrote `file` (HDF5 through h5wasm) as one line naming the path: a
 * full disk is said as such; `reason` is the library's one-line reason otherwise.
 */
export function libraryWriteError(e: unknown, file: string, reason: string): Error {
  const raw = String((e as Error)?.message ?? e);
  if (/No space left on device|ENOSPC/.test(raw)) return fsErrorMessage({ code: "ENOSPC" }, file);
  if (/Disk quota exceeded|EDQUOT/.test(raw)) return fsErrorMessage({ code: "EDQUOT" }, file);
  return new Error(`${shownPath(file)}: writing failed (${reason}); nothing was written under this name`);
}

/**
 * Seam for the fault suite: when set, called before every {@link writeAll} chunk with the file and
 * the bytes already written; it may return a smaller byte count (a short write) or throw (ENOSPC).
 */
export const writeFaults: { hook?: (file: string, written: number, want: number) => number | undefined } = {};

/**
 * Write all of `data` to `fd` (a short write, as a nearly full disk returns, is continued; a write
 * that makes no progress is ENOSPC). @throws Error naming `file` ({@link fsErrorMessage})
 */
export function writeAll(fd: number, data: string | Uint8Array, file: string): void {
  const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let off = 0;
  try {
    while (off < buf.byteLength) {
      let want = buf.byteLength - off;
      const hooked = writeFaults.hook?.(file, off, want);
      if (hooked !== undefined) want = Math.min(want, hooked);
      const n = want > 0 ? fs.writeSync(fd, buf, off, want) : 0;
      if (n <= 0) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      off += n;
    }
  } catch (e) {
    throw fsErrorMessage(e, file);
  }
}

/** fsync and close `fd`, both checked (a close error, e.g. a deferred write error, is an error). */
export function syncClose(fd: number, file: string): void {
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* the fsync error is the one to report */
    }
    throw fsErrorMessage(e, file);
  }
  try {
    fs.closeSync(fd);
  } catch (e) {
    throw fsErrorMessage(e, file);
  }
}

/**
 * Write one file atomically: a temporary file in the same folder, every byte checked
 * ({@link writeAll}), fsync, checked close, rename. On any failure the temporary file is removed and
 * nothing exists under `target` that was not there before. @throws Error naming `target`
 */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  const abs = path.resolve(target);
  try {
    fs.mkdirSync(path.dirname(abs), { recursive: true });
  } catch (e) {
    throw fsErrorMessage(e, path.dirname(abs));
  }
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, "w");
    writeAll(fd, data, abs);
    const f = fd;
    fd = undefined;
    syncClose(f, abs);
    fs.renameSync(tmp, abs);
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* reporting the first error */
      }
    }
    fs.rmSync(tmp, { force: true });
    throw (e as Error).message?.startsWith(shownPath(abs)) ? e : fsErrorMessage(e, abs);
  }
}

/**
 * Append `text` to `file` (metrics logs), every byte checked. @throws Error naming `file`
 */
export function appendChecked(file: string, text: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "a");
    writeAll(fd, text, file);
    const f = fd;
    fd = undefined;
    fs.closeSync(f);
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* reporting the first error */
      }
    }
    throw (e as Error).message?.startsWith(shownPath(file)) ? e : fsErrorMessage(e, file);
  }
}

/** fsync an existing file (e.g. one a library wrote) before it is renamed to its final name. @throws Error naming `file` */
export function fsyncFile(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, "r+");
  } catch (e) {
    throw fsErrorMessage(e, file);
  }
  syncClose(fd, file);
}

/**
 * `rel`, a path read from a file inside folder `dir` (a manifest's shard, a checkpoint's table),
 * resolved inside `dir`; refused before anything is opened when it is absolute or leaves `dir`
 * (`..`, or a symbolic link out of it). @param what names the field in the message
 * @throws Error naming the file that lists it, the field and the path (never the target's contents)
 */
export function containedPath(dir: string, rel: unknown, what: string): string {
  if (typeof rel !== "string" || rel === "" || rel.includes("\0")) throw new Error(`${what}: expected a file name inside ${dir}, got ${JSON.stringify(rel)?.slice(0, 80)}`);
  if (path.isAbsolute(rel)) throw new Error(`${what}: ${JSON.stringify(rel)} is an absolute path; only files inside ${dir} are read`);
  const base = path.resolve(dir);
  const abs = path.resolve(base, rel);
  if (!within(abs, base)) throw new Error(`${what}: ${JSON.stringify(rel)} leaves the folder ${dir}; only files inside it are read`);
  if (fs.existsSync(abs) && !within(fs.realpathSync(abs), fs.realpathSync(base))) {
    throw new Error(`${what}: ${JSON.stringify(rel)} is a link that leaves the folder ${dir}; only files inside it are read`);
  }
  return abs;
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

/**
 * `--force` for an output written piece by piece (a training run, a comparison), which cannot be
 * built beside the old one and renamed at the end: move the previous result aside as
 * `<target>.old-<pid>-<ms>` ({@link settleSetAside} removes it once the new one holds a result, or
 * puts it back when the new one fails before it has one). @returns the side path
 */
export function setAside(target: string): string {
  const abs = path.resolve(target);
  const old = `${abs}.old-${process.pid}-${Date.now()}`;
  try {
    fs.renameSync(abs, old);
  } catch (e) {
    throw fsErrorMessage(e, abs);
  }
  return old;
}

/**
 * Settle the previous results of `target` set aside by {@link setAside} — this process's (`own`,
 * when its run ended) or those of processes that no longer run (killed): when `target` now holds a
 * result (`hasResult`), the previous one is removed; otherwise the new attempt's files (cellfm's only:
 * a folder with {@link foreignFiles} is left as it is, and the previous one stays aside) are removed
 * and the previous result is put back.
 * @returns what happened, one line per previous result (empty when there was none)
 */
export function settleSetAside(target: string, hasResult: (dir: string) => boolean, own: boolean): string[] {
  const abs = path.resolve(target);
  const parent = path.dirname(abs), base = path.basename(abs);
  if (!fs.existsSync(parent)) return [];
  const said: string[] = [];
  for (const name of fs.readdirSync(parent).sort()) {
    const m = TEMP_RE.exec(name);
    if (!m || m[1] !== base || m[2] !== "old") continue;
    const pid = Number(m[3]);
    if (own ? pid !== process.pid : pidAlive(pid)) continue;
    const old = path.join(parent, name);
    if (fs.existsSync(abs) && hasResult(abs)) {
      fs.rmSync(old, { recursive: true, force: true });
      said.push(`the previous result in ${target} was replaced by the new one`);
    } else if (!fs.existsSync(abs) || foreignFiles(abs).length === 0) {
      fs.rmSync(abs, { recursive: true, force: true });
      fs.renameSync(old, abs);
      said.push(`the new attempt ended without a result; the previous result in ${target} was kept`);
    } else {
      said.push(`the new attempt in ${target} ended without a result, and holds files cellfm did not write; the previous result is in ${old}`);
    }
  }
  return said;
}
