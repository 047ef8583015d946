import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  compactDictionaries,
  compactFileName,
  loadGeneformerDictionaries,
  loadGeneformerDictionariesTsv,
  type GeneformerVersion,
} from "../../src/tokenize/dictionaries.js";

const dir = path.resolve(__dirname, "..", "..", "data", "geneformer");

// The tokenizer loads the bundled dictionaries from data/geneformer/compact_<corpus>.json
// (scripts/build-compact-dictionaries.mjs); these must be the TSVs, entry for entry.
describe("compact Geneformer dictionaries", () => {
  for (const v of ["V1", "V2"] as GeneformerVersion[]) {
    it(`${v}: the compact file loads the same maps, in the same order, as the TSVs`, () => {
      const compact = loadGeneformerDictionaries(v);
      const tsv = loadGeneformerDictionariesTsv(v, dir);
      expect([...compact.tokens.entries()]).toEqual([...tsv.tokens.entries()]);
      expect([...compact.medians.entries()]).toEqual([...tsv.medians.entries()]); // exact float64 (toEqual uses Object.is)
      expect([...compact.mapping.entries()]).toEqual([...tsv.mapping.entries()]);
      expect(compact.vocabSize).toBe(tsv.vocabSize);
      expect(compact.special).toEqual(tsv.special);
      expect([compact.maxGenes, compact.modelInputSize]).toEqual([tsv.maxGenes, tsv.modelInputSize]);
      // the recorded sha256 are those of the TSVs on disk now (what a dataset manifest cites)
      expect(compact.files).toEqual(tsv.files);
      for (const f of Object.values(compact.files)) {
        expect(createHash("sha256").update(fs.readFileSync(path.join(dir, f.name))).digest("hex")).toBe(f.sha256);
      }
    });

    it(`${v}: the compact file is what the build script writes from the TSVs`, () => {
      const onDisk = JSON.parse(fs.readFileSync(path.join(dir, compactFileName(v)), "utf8"));
      expect(onDisk).toEqual(compactDictionaries(loadGeneformerDictionariesTsv(v, dir)));
    });
  }

  it("a dictionary folder given explicitly is read from its TSVs (a changed TSV takes effect)", () => {
    const alt = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-dict-"));
    for (const f of ["token_dictionary_gc30M.tsv", "gene_median_gc30M.tsv", "ensembl_mapping_gc30M.tsv"]) fs.copyFileSync(path.join(dir, f), path.join(alt, f));
    const med = path.join(alt, "gene_median_gc30M.tsv");
    fs.writeFileSync(med, fs.readFileSync(med, "utf8").replace(/^ENSG00000000003\t[^\n]*/m, "ENSG00000000003\t7.5"));
    const d = loadGeneformerDictionaries("V1", alt);
    expect(d.medians.get("ENSG00000000003")).toBe(7.5);
    expect(loadGeneformerDictionaries("V1").medians.get("ENSG00000000003")).toBe(2.001186019549122);
    expect(d.files.medians.sha256).not.toBe(loadGeneformerDictionaries("V1").files.medians.sha256);
  });
});
