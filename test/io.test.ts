import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { assertWritable, commitDir, tempDirFor, writeFileAtomic } from "../src/io.js";
import { makeRng, shuffle } from "../src/rng.js";

describe("io", () => {
  it("refuses to overwrite without force and replaces atomically with force", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-io-"));
    const target = path.join(dir, "out");
    assertWritable(target);
    const tmp = tempDirFor(target, "test");
    fs.writeFileSync(path.join(tmp, "a.txt"), "one");
    commitDir(tmp, target);
    expect(() => assertWritable(target)).toThrow(/--force/);
    const tmp2 = tempDirFor(target, "test");
    fs.writeFileSync(path.join(tmp2, "a.txt"), "two");
    expect(() => commitDir(tmp2, target)).toThrow(/already exists/);
    commitDir(tmp2, target, true, { command: "test" });
    expect(fs.readFileSync(path.join(target, "a.txt"), "utf8")).toBe("two");
    expect(fs.readdirSync(dir)).toEqual(["out"]);
    writeFileAtomic(path.join(dir, "f.json"), "{}");
    expect(fs.readFileSync(path.join(dir, "f.json"), "utf8")).toBe("{}");
  });
});

describe("rng", () => {
  it("is reproducible from a seed and resumable from its state", () => {
    const a = makeRng(7);
    const b = makeRng(7);
    expect([a(), a(), a()]).toEqual([b(), b(), b()]);
    const st = a.state();
    const next = [a(), a()];
    const c = makeRng(7, st);
    expect([c(), c()]).toEqual(next);
    const perm = shuffle(makeRng(1), [0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...perm].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});
