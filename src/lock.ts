/**
 * Exclusive output locks: every cellfm command that writes a file or folder holds a lock on it for
 * as long as it runs, so that two runs onto one output never mix (issue 20 §1). The lock is a file
 * beside the output, `<output>.cellfm-lock`, created with `O_EXCL` (atomic on local file systems
 * and NFSv3+), holding `{ pid, host, command, started, pid_start }`.
 *
 * A second writer is refused with the holder named. A lock whose process is gone (same host, and
 * the pid is not running, or was reused by a process that started after the lock was taken) is
 * stale and taken over. A lock taken on another host cannot be checked from here: it is refused,
 * and the message says which file to remove if that run is known to be gone.
 *
 * `proper-lockfile` (npm) decides staleness by the lock's mtime, refreshed by a timer of the
 * holder: a long synchronous step (one training step of a big model, an fsync of a large shard)
 * would let another process take a live lock. Liveness by pid and host, as asked for here, needs
 * no timer; hence this small lock.
 *
 * Within one process the lock is re-entrant (a command calling another stage on the same output,
 * or a test calling the API twice): it is released by {@link releaseOutputLocks} (the CLI does so
 * when a command ends) or when the process exits.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** What a lock file holds. */
export interface LockInfo {
  pid: number;
  host: string;
  command: string;
  /** ISO-8601 time the lock was taken. */
  started: string;
  /** the holder's start time in clock ticks since boot (Linux `/proc/<pid>/stat` field 22), to tell a reused pid. */
  pid_start?: number;
}

/** The lock file of output `target`. */
export function lockPathOf(target: string): string {
  return `${path.resolve(target)}.cellfm-lock`;
}

/** Locks this process holds: lock file → its info. */
const held = new Map<string, LockInfo>();
let exitHookInstalled = false;

/** Start time of process `pid` in clock ticks since boot (Linux), or undefined where /proc is absent. */
function processStart(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // field 2 (comm) may hold spaces and parentheses: fields 3.. follow the last ")"
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the process that wrote `info` still runs (on this host). */
function holderAlive(info: LockInfo): boolean {
  try {
    process.kill(info.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (info.pid_start !== undefined) {
    const now = processStart(info.pid);
    if (now !== undefined && now !== info.pid_start) return false; // the pid was reused
  }
  return true;
}

function readLock(file: string): LockInfo | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, "utf8")) as LockInfo;
    return typeof v?.pid === "number" && typeof v.host === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

function describe(info: LockInfo): string {
  return `cellfm ${info.command} (pid ${info.pid} on ${info.host}, since ${info.started})`;
}

/**
 * Create `file` exclusively, already holding `info` (written to a private name, then hard-linked:
 * another process never sees a lock without its holder). File systems without hard links fall back
 * to `O_EXCL`. @returns false when `file` exists
 */
function createExclusive(file: string, info: LockInfo): boolean {
  const mine = `${file}.${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  fs.writeFileSync(mine, JSON.stringify(info) + "\n", { flag: "wx" });
  try {
    fs.linkSync(mine, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EXDEV") throw e;
  } finally {
    fs.rmSync(mine, { force: true });
  }
  try {
    fs.writeFileSync(file, JSON.stringify(info) + "\n", { flag: "wx" });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => releaseOutputLocks());
}

/**
 * Take the exclusive lock on output `target` (a file or folder, existing or not) for `command`.
 * Re-entrant within this process. A stale lock (its process is gone) is taken over.
 * @throws Error naming the output and the holder when another live process holds it, or when it is
 *   held from another host (whose liveness cannot be checked: the message names the lock file to
 *   remove if that run is gone)
 */
export function lockOutput(target: string, command: string): void {
  const file = lockPathOf(target);
  if (held.has(file)) return;
  const parent = path.dirname(file);
  if (fs.existsSync(parent) && !fs.statSync(parent).isDirectory()) {
    throw Object.assign(new Error(`ENOTDIR: not a directory, open '${parent}'`), { code: "ENOTDIR", path: parent });
  }
  fs.mkdirSync(parent, { recursive: true });
  const info: LockInfo = { pid: process.pid, host: os.hostname(), command, started: new Date().toISOString(), pid_start: processStart(process.pid) };
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(file, info)) {
      held.set(file, info);
      installExitHook();
      return;
    }
    const other = readLock(file);
    if (other && other.host !== info.host) {
      throw new Error(`output ${target} is locked by ${describe(other)}; if that run is gone, remove ${file} and run again`);
    }
    if (other && other.pid === process.pid && other.host === info.host) {
      // ours from an earlier command of this process that did not release it: take it again
      held.set(file, other);
      installExitHook();
      return;
    }
    if (other && holderAlive(other)) {
      throw new Error(`output ${target} is being written by ${describe(other)}; wait for it to finish, or stop it, before running another command on it`);
    }
    // stale (dead holder) or unreadable (a holder killed while writing it): take it over under a
    // second lock, so that of two processes taking it over at once only one wins
    const guard = `${file}.takeover`;
    const mine: LockInfo = { ...info, command: `${command} (taking over a stale lock)` };
    if (!createExclusive(guard, mine)) {
      const g = readLock(guard);
      if (g && g.host === info.host && !holderAlive(g)) fs.rmSync(guard, { force: true });
      continue;
    }
    try {
      // remove it only if it is still the stale lock judged above (not one a live process took since)
      const again = readLock(file);
      const same = other ? again !== undefined && again.pid === other.pid && again.started === other.started : again === undefined;
      if (same && !(again && holderAlive(again))) fs.rmSync(file, { force: true });
    } finally {
      fs.rmSync(guard, { force: true });
    }
  }
  throw new Error(`output ${target}: could not take its lock ${file}; another cellfm command is starting on it`);
}

/** Remove lock file `file` of this process (only if it still holds this process's lock). */
function releaseFile(file: string): void {
  const info = held.get(file);
  if (!info) return;
  held.delete(file);
  try {
    const now = readLock(file);
    if (now && now.pid === info.pid && now.started === info.started) fs.rmSync(file, { force: true });
  } catch {
    /* best effort (at exit) */
  }
}

/** Release this process's lock on `target` (if held). */
export function releaseOutputLock(target: string): void {
  releaseFile(lockPathOf(target));
}

/** Release every lock this process holds (the CLI calls it when a command ends; also on exit). */
export function releaseOutputLocks(): void {
  for (const file of [...held.keys()]) releaseFile(file);
}

/** Whether this process holds the lock on `target`. */
export function isOutputLockHeld(target: string): boolean {
  return held.has(lockPathOf(target));
}

/** Locks this process holds (tests). */
export function heldOutputLocks(): string[] {
  return [...held.keys()];
}

/**
 * Run stage `fn` and release the output locks it took (those this process did not hold before),
 * when it returns or fails: a stage called through the API leaves no lock behind.
 */
export async function withOutputLocks<T>(fn: () => Promise<T>): Promise<T> {
  const before = new Set(held.keys());
  try {
    return await fn();
  } finally {
    for (const file of [...held.keys()]) if (!before.has(file)) releaseFile(file);
  }
}

/** {@link withOutputLocks} for a synchronous stage. */
export function withOutputLocksSync<T>(fn: () => T): T {
  const before = new Set(held.keys());
  try {
    return fn();
  } finally {
    for (const file of [...held.keys()]) if (!before.has(file)) releaseFile(file);
  }
}
