/**
 * File-system helpers shared by every stage: never overwrite a user's output without `force`,
 * and write files/folders atomically (temporary name, then rename), so a crash never leaves a
 * half-written result under the final name.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * Refuse to write to `target` if it exists, unless `force` (an existing target is then replaced only
 * once the new output is complete, see {@link commitDir}). Creates the parent folder.
 * @throws Error naming the path and the `--force` flag.
 */
export function assertWritable(target: string, force = false): void {
  if (fs.existsSync(target) && !force) {
    throw new Error(`output ${target} already exists; pass --force to overwrite it`);
  }
  const parent = path.dirname(path.resolve(target));
  if (!fs.existsSync(parent)) fs.mkdirSync(parent, { recursive: true });
}

/** Create a fresh temporary sibling folder for `target` (same file system, so rename is atomic). */
export function tempDirFor(target: string): string {
  const abs = path.resolve(target);
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp, { recursive: true });
  return tmp;
}

/**
 * Move a completed temporary folder to `target`. With `force`, an existing `target` is replaced;
 * the old one is removed only after the new one is in place under a side name.
 */
export function commitDir(tmp: string, target: string, force = false): void {
  const abs = path.resolve(target);
  if (fs.existsSync(abs)) {
    if (!force) throw new Error(`output ${target} already exists; pass --force to overwrite it`);
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

/** Path of a bundled resource (data/, configs/) relative to the package root, from src/ or dist/. */
export function packagePath(...parts: string[]): string {
  const here = path.dirname(new URL(import.meta.url).pathname);
  return path.resolve(here, "..", ...parts);
}
