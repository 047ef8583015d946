#!/usr/bin/env node
// Build data/geneformer/compact_<corpus>.json (the pre-parsed form the tokenizer loads) from the
// bundled TSVs, for V1 (gc30M) and V2 (gc104M). Run after changing a TSV, from the repository root,
// after `npm run build`:  node scripts/build-compact-dictionaries.mjs
// test/tokenize/dictionaries.test.ts fails while a compact file differs from its TSVs.
import * as fs from "node:fs";
import * as path from "node:path";
import { compactDictionaries, compactFileName, loadGeneformerDictionariesTsv } from "../dist/tokenize/dictionaries.js";

const dir = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "data", "geneformer");
for (const v of ["V1", "V2"]) {
  const c = compactDictionaries(loadGeneformerDictionariesTsv(v, dir));
  const file = path.join(dir, compactFileName(v));
  // non-ASCII escaped, so the loader may read the file as latin1 (cheaper than UTF-8 decoding)
  const json = JSON.stringify(c).replace(/[\u0080-\uffff]/g, (ch) => "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0"));
  fs.writeFileSync(file, json + "\n");
  console.log(`${file}: ${fs.statSync(file).size} bytes (${c.median_tokens.length} medians, ${c.mapping_tokens.length} mapping entries)`);
}
