/**
 * Training and embedding on the native BLAS kernels (src/blas.ts) against the plain-wasm fallback:
 * the same tiny model on the 300 real PBMC cells of data/tiny.h5ad trained here (native where it is
 * built) and in a child process with CELLFM_BLAS=off (the fallback path, run in every suite), same
 * losses within float tolerance; embeddings on the native kernels independent of batch mates.
 * Resume exactness on one provider is tested by test/train/loop.test.ts, which runs on whatever
 * kernels `initBackend` installs.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { initBackend } from "../../src/backend.js";
import { blasStatus } from "../../src/blas.js";
import { embedCells } from "../../src/embed/embed.js";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { train } from "../../src/train/loop.js";
import { spawnCli } from "../faults/helpers.js";
import { maxAbsDiff, randomCells, TINY } from "../model/helpers.js";
import { TINY_MODEL, writeGoldenTokens } from "./helpers.js";
import { parseTrainConfig } from "../../src/train/config.js";

let tmp: string;
let tokens: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-blas-"));
  tokens = path.join(tmp, "tokens");
  writeGoldenTokens(tokens);
  await initBackend("wasm");
  if (!blasStatus().active) console.log(`blas.test: native BLAS kernels not active (${blasStatus().reason}); both runs use plain wasm`);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const raw = (out: string) => ({
  model: { ...TINY_MODEL, hidden_act: "relu" },
  data: { tokens, max_length: 64, val_fraction: 0.2 },
  training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 2, log_every: 1, seed: 7, max_steps: 6, lr: 3e-3, workers: 1 },
  output: { dir: path.join(tmp, out) },
  backend: "wasm",
});

/**
 * Float tolerance between the two providers: the BLAS sums each dot product in another order (with
 * FMA), so single products differ in the last bits (up to ~3e-6 absolute on 32-wide sums here,
 * test/model/blas.test.ts); on this tiny model the six losses (nats, ~10) came out identical to the
 * last float32 bit. The bound, 1e-4 relative, still catches a wrong kernel (a wrong transpose or
 * bias moves the loss by > 1e-2).
 */
const LOSS_RTOL = 1e-4;

describe("native BLAS kernels in training and embedding", () => {
  it("trains to the same losses as plain wasm (CELLFM_BLAS=off, in a child process)", async () => {
    const here = await train(parseTrainConfig(raw("native"), "native.yaml"), { quiet: true });
    const run = JSON.parse(fs.readFileSync(path.join(tmp, "native", "run.json"), "utf8"));
    expect(run.kernels).toBe(here.backend.kernels);
    expect(here.eval!.kernels).toBe(here.backend.kernels);

    const f = path.join(tmp, "fallback.yaml");
    fs.writeFileSync(f, stringify(raw("fallback")));
    const r = await spawnCli(["train", "--config", f], { env: { CELLFM_BLAS: "off" } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/matmul kernels: wasm \(XNNPACK\); no native BLAS: CELLFM_BLAS=off/);
    const fb = JSON.parse(fs.readFileSync(path.join(tmp, "fallback", "run.json"), "utf8"));
    expect(fb.kernels).toMatch(/^wasm \(XNNPACK\)/);
    const losses = fs
      .readFileSync(path.join(tmp, "fallback", "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((x) => x.loss !== undefined && x.val_loss === undefined)
      .map((x) => x.loss as number);
    expect(losses.length).toBe(here.losses.length);
    const rel = Math.max(...here.losses.map((l, i) => Math.abs(l - losses[i]) / Math.abs(losses[i])));
    console.log(`blas.test: ${blasStatus().provider} vs plain wasm, 6 steps: largest relative loss difference ${rel.toExponential(2)}`);
    here.losses.forEach((l, i) => expect(Math.abs(l - losses[i]) / Math.abs(losses[i]), `step ${i + 1}`).toBeLessThan(LOSS_RTOL));
    if (!blasStatus().active) expect(here.losses).toEqual(losses);
  });

  it("embeds each cell the same whatever its batch mates, padding or batch size", () => {
    const m = new BertForMaskedLM(TINY, { seed: 3 });
    const cells = randomCells(13, 1, 40, 200, 5).map((c) => Int32Array.from(c));
    const ref = embedCells(m, cells, { maxTokensPerBatch: 1 });
    for (const budget of [40, 333, 100000]) {
      expect(maxAbsDiff(embedCells(m, cells, { maxTokensPerBatch: budget }), ref), `budget ${budget}`).toBeLessThan(1e-5);
    }
    const rev = embedCells(m, [...cells].reverse());
    expect(maxAbsDiff(rev.subarray(0, 32), ref.subarray(12 * 32, 13 * 32))).toBeLessThan(1e-5);
    m.dispose();
  });
});
