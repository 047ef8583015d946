#!/usr/bin/env node
// npm `install` script: builds native/cellfm_blas.node (the native sgemm under the wasm matmul kernels,
// src/blas.ts) with node-gyp against the machine's BLAS (OpenBLAS on Linux: Debian `libopenblas-dev`;
// Accelerate on macOS). It never fails the install: where there is no BLAS, compiler or node-gyp it
// prints one line and cellfm runs on plain wasm. CELLFM_BLAS=off skips the build.
// Rebuild by hand: `npm run build:native`.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dir = path.join(root, "native");
const say = (s) => process.stderr.write(`cellfm: ${s}\n`);

function nodeGyp() {
  // npm passes its bundled node-gyp to scripts; otherwise look next to npm, then in node_modules.
  const cands = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath) cands.push(path.join(path.dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  try {
    cands.push(createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js"));
  } catch {
    // not installed locally
  }
  return cands.find((c) => c && fs.existsSync(c));
}

const off = ["0", "off", "false", "no"].includes(String(process.env.CELLFM_BLAS ?? "").toLowerCase());
if (off) {
  say("native BLAS kernels not built (CELLFM_BLAS=off); matmuls run on plain wasm");
} else {
  const gyp = nodeGyp();
  if (!gyp) {
    say("native BLAS kernels not built (node-gyp not found); matmuls run on plain wasm");
  } else {
    const r = spawnSync(process.execPath, [gyp, "rebuild"], { cwd: dir, encoding: "utf8", env: process.env });
    const log = path.join(dir, "build-native.log");
    try {
      fs.writeFileSync(log, `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}`);
    } catch {
      // read-only install folder: the one line below still says what happened
    }
    if (r.status === 0) {
      say("native BLAS kernels built (native/build/Release/cellfm_blas.node)");
    } else {
      const text = `${r.stderr ?? ""}${r.stdout ?? ""}`;
      const why = /cannot find -l(\w+)/.exec(text)
        ? `no ${/cannot find -l(\w+)/.exec(text)[1]} library: install libopenblas-dev (Debian/Ubuntu) or openblas`
        : /not found|ENOENT/.test(text)
          ? "no C compiler/make/python3 for node-gyp"
          : `node-gyp failed, see ${path.relative(root, log)}`;
      say(`native BLAS kernels not built (${why}); matmuls run on plain wasm. Rebuild with: npm run build:native`);
    }
  }
}
