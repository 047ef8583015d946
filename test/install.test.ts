/**
 * The install step of the README: `npm install -g .` puts `cellfm` on the PATH, and the installed bin
 * runs from any folder (its data files — dictionaries, gene tables — resolve from the package, not
 * from the current directory). Installed here into a temporary prefix with `--ignore-scripts`
 * (`npm ci` / the suite already built dist/); skipped with a note where npm is not on the PATH.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "..");
const npm = spawnSync("npm", ["--version"], { encoding: "utf8" });
const haveNpm = npm.status === 0 && fs.existsSync(path.join(root, "dist", "cli.js"));
if (!haveNpm) console.warn("skipping the install test: npm is not on the PATH or dist/ is not built (npm run build)");

describe.skipIf(!haveNpm)("installed cellfm", () => {
  it("npm install -g . gives a `cellfm` that runs from another folder", () => {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-prefix-"));
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-elsewhere-"));
    try {
      const inst = spawnSync("npm", ["install", "-g", "--prefix", prefix, root, "--ignore-scripts", "--offline", "--no-audit", "--no-fund"], {
        encoding: "utf8",
        cwd: elsewhere,
      });
      expect(inst.status, inst.stderr).toBe(0);
      const bin = path.join(prefix, "bin", "cellfm");
      expect(fs.existsSync(bin)).toBe(true);
      const env = { ...process.env, PATH: `${path.join(prefix, "bin")}${path.delimiter}${process.env.PATH}` };
      const help = spawnSync("cellfm", ["--help"], { encoding: "utf8", cwd: elsewhere, env });
      expect(help.status, help.stderr).toBe(0);
      expect(help.stdout).toMatch(/cellfm tokenize/);
      // a real command from a folder without the repository: the bundled dictionaries are found
      fs.copyFileSync(path.join(root, "data", "tiny.h5ad"), path.join(elsewhere, "mine.h5ad"));
      const tok = spawnSync("cellfm", ["tokenize", "-i", "mine.h5ad", "-o", "tokens", "--carry", "cell_type", "--quiet"], { encoding: "utf8", cwd: elsewhere, env });
      expect(tok.status, tok.stderr).toBe(0);
      expect(fs.existsSync(path.join(elsewhere, "tokens", "manifest.json"))).toBe(true);
    } finally {
      fs.rmSync(prefix, { recursive: true, force: true });
      fs.rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
