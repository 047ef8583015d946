/** Test helpers: small temporary .h5ad files written with h5wasm. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeCsrH5ad, type WriteColumns } from "../../src/data/h5ad.js";

export function tmpDir(prefix = "cellfm-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Write a dense cells × genes matrix (row-major numbers) as a CSR .h5ad. */
export async function writeDenseAsH5ad(
  file: string,
  rows: number[][],
  geneIds: string[],
  opts: { obs?: WriteColumns; cellIds?: string[]; dtype?: "<f" | "<d" | "<i"; varColumns?: WriteColumns } = {},
): Promise<void> {
  const indptr = [0];
  const indices: number[] = [];
  const data: number[] = [];
  for (const r of rows) {
    r.forEach((x, j) => {
      if (x !== 0) {
        indices.push(j);
        data.push(x);
      }
    });
    indptr.push(indices.length);
  }
  await writeCsrH5ad(file, {
    nCells: rows.length,
    nGenes: geneIds.length,
    nnz: indices.length,
    rows: [{ indptr, indices: Int32Array.from(indices), data }],
    obs: { index: opts.cellIds ?? rows.map((_, i) => `cell${i}`), columns: opts.obs },
    var: { index: geneIds, columns: opts.varColumns ?? { ensembl_id: geneIds } },
    dtype: opts.dtype ?? "<d",
  });
}

/** First `n` Ensembl IDs of the bundled V1 token dictionary (all known genes). */
export function knownGenes(n: number): string[] {
  const text = fs.readFileSync(new URL("../../data/geneformer/token_dictionary_gc30M.tsv", import.meta.url), "utf8");
  return text.split("\n").slice(3, 3 + n).map((l) => l.split("\t")[1]);
}
