/**
 * Shared pieces of the fault-injection suite (issue 8): run the CLI in-process or as a real
 * process, and prove that a refused or failed command left every file that existed before it
 * untouched (same SHA-256), and nothing new except what it is allowed to write.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expect } from "vitest";
import { main } from "../../src/cli.js";

/** A fresh temporary folder for one test. */
export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `cellfm-fault-${tag}-`));
}

/** SHA-256 of every file under `roots` (recursively), by absolute path. */
export function snapshot(...roots: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string) => {
    if (!fs.existsSync(p)) return;
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n));
    else out.set(path.resolve(p), crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex"));
  };
  for (const r of roots) walk(r);
  return out;
}

/** Every file of `before` still exists with the same checksum. */
export function expectUnchanged(before: Map<string, string>): void {
  const roots = [...before.keys()];
  const now = snapshot(...roots);
  for (const [f, h] of before) {
    expect(fs.existsSync(f), `${f} was deleted`).toBe(true);
    expect(now.get(f), `${f} was changed`).toBe(h);
  }
}

/**
 * Run `cellfm <args>` in this process (as bin/cellfm.js does, which prints `cellfm: <message>` and
 * exits 1 on a rejection). @returns exit code (1 on error, else process.exitCode or 0) and the message
 */
export async function cli(args: string[]): Promise<{ code: number; message: string }> {
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    await main(args);
    const code = Number(process.exitCode ?? 0);
    return { code, message: "" };
  } catch (e) {
    return { code: 1, message: (e as Error).message };
  } finally {
    process.exitCode = saved;
  }
}

/**
 * Expect `cellfm <args>` to fail: exit code 1, a one-line message matching every pattern, and
 * every file under `guard` unchanged. @returns the message
 */
export async function expectRefused(args: string[], patterns: (string | RegExp)[], guard: string[] = []): Promise<string> {
  const before = snapshot(...guard);
  const r = await cli(args);
  expect(r.code, `cellfm ${args.join(" ")} should fail`).toBe(1);
  expect(r.message.split("\n").length, `one line: ${r.message}`).toBe(1);
  for (const p of patterns) {
    if (typeof p === "string") expect(r.message).toContain(p);
    else expect(r.message).toMatch(p);
  }
  expectUnchanged(before);
  return r.message;
}

/** Result of {@link spawnCli}. */
export interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `cellfm <args>` as its own process (from the sources, through tsx). With `signal`, send it
 * once stderr matches `when` (e.g. a logged step), to test what a cluster's SIGTERM does.
 */
export function spawnCli(
  args: string[],
  opts: { signal?: NodeJS.Signals; when?: RegExp; env?: Record<string, string>; onChild?: (c: ChildProcess) => void } = {},
): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.resolve("test/faults/entry.ts"), ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "", stderr = "", sent = false;
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      if (opts.signal && !sent && (opts.when ?? /./).test(stderr)) {
        sent = true;
        child.kill(opts.signal);
      }
    });
    opts.onChild?.(child);
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
