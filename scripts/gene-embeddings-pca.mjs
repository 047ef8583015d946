#!/usr/bin/env node
/**
 * Build a small gene-embedding file (`model.gene_embeddings`) from the expression of a reference
 * data set: each gene's loadings on the top principal components of the cells.
 *
 *   node scripts/gene-embeddings-pca.mjs --input ref.h5ad --output genes.tsv [--dim 16] [--min-cells 10] [--max-genes 10000] [--seed 0]
 *
 * Method (scanpy-style preprocessing, then a randomized SVD, Halko et al. 2011):
 *   x = log1p(count / total × 10,000) per cell; genes with an Ensembl ID detected in ≥ min-cells
 *   cells (the max-genes most detected); each gene centred and scaled to unit variance, clipped at
 *   ±10; X (cells × genes) ≈ U S Vᵀ; gene vector = V[:, :dim] · S[:dim] / √(n_cells − 1)
 *   (the gene's loadings: its correlation-scale coordinates on the top components).
 *
 * This is a **labelled stand-in** for real gene embeddings (ESM2 protein vectors, as scPRINT uses, or
 * UCE / rosa gene vectors): it only knows how genes co-vary in one reference tissue. Use a reference
 * that is not the data you evaluate on, or the vectors leak the held-out cells' expression.
 * Output: TSV `gene_id<TAB>pc1 …`, a `#` provenance comment first, values with 4 decimals.
 */
import * as fs from "node:fs";
import * as crypto from "node:crypto";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const { openCounts } = await import(path.join(here, "..", "dist", "data", "open.js"));
const { makeRng } = await import(path.join(here, "..", "dist", "rng.js"));

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (def === undefined) throw new Error(`--${name} is required`);
    return def;
  }
  return process.argv[i + 1];
}
const input = arg("input");
const output = arg("output");
const dim = Number(arg("dim", "16"));
const minCells = Number(arg("min-cells", "10"));
const maxGenes = Number(arg("max-genes", "10000"));
const seed = Number(arg("seed", "0"));
if (fs.existsSync(output) && !process.argv.includes("--force")) throw new Error(`${output} exists; pass --force to replace it`);

const src = await openCounts(input);
const nC = src.nCells, nG = src.nGenes;
const ens = src.var.columns.ensembl_id ?? src.var.index;
// pass 1: totals and detection counts
const total = new Float64Array(nC), detected = new Int32Array(nG);
const chunks = [];
for (const ch of src.chunks(512)) {
  chunks.push(ch);
  for (let r = 0; r < ch.nCells; r++) {
    for (let k = ch.indptr[r]; k < ch.indptr[r + 1]; k++) {
      total[ch.start + r] += ch.data[k];
      if (ch.data[k] > 0) detected[ch.indices[k]]++;
    }
  }
}
src.close();
const cand = [];
for (let g = 0; g < nG; g++) if (detected[g] >= minCells && /^ENSG\d+/i.test(String(ens[g] ?? ""))) cand.push(g);
cand.sort((a, b) => detected[b] - detected[a] || a - b);
const genes = cand.slice(0, maxGenes).sort((a, b) => a - b);
const col = new Int32Array(nG).fill(-1);
genes.forEach((g, j) => (col[g] = j));
const G = genes.length;
// dense standardized matrix X [nC × G]
const X = new Float32Array(nC * G);
for (const ch of chunks) {
  for (let r = 0; r < ch.nCells; r++) {
    const c = ch.start + r;
    for (let k = ch.indptr[r]; k < ch.indptr[r + 1]; k++) {
      const j = col[ch.indices[k]];
      if (j >= 0 && total[c] > 0) X[c * G + j] = Math.log1p((ch.data[k] / total[c]) * 1e4);
    }
  }
}
for (let j = 0; j < G; j++) {
  let s = 0, ss = 0;
  for (let c = 0; c < nC; c++) s += X[c * G + j];
  const m = s / nC;
  for (let c = 0; c < nC; c++) ss += (X[c * G + j] - m) ** 2;
  const sd = Math.sqrt(ss / (nC - 1)) || 1;
  for (let c = 0; c < nC; c++) X[c * G + j] = Math.max(-10, Math.min(10, (X[c * G + j] - m) / sd));
}
// randomized SVD: k = dim + 8 columns, 4 power iterations
const K = dim + 8;
const rng = makeRng(`${seed}:gene-pca`);
const mulXV = (V) => {
  // X [nC × G] · V [G × K] → [nC × K]
  const out = new Float64Array(nC * K);
  for (let c = 0; c < nC; c++) for (let j = 0; j < G; j++) {
    const x = X[c * G + j];
    if (x === 0) continue;
    for (let k = 0; k < K; k++) out[c * K + k] += x * V[j * K + k];
  }
  return out;
};
const mulXtU = (U) => {
  // Xᵀ [G × nC] · U [nC × K] → [G × K]
  const out = new Float64Array(G * K);
  for (let c = 0; c < nC; c++) for (let j = 0; j < G; j++) {
    const x = X[c * G + j];
    if (x === 0) continue;
    for (let k = 0; k < K; k++) out[j * K + k] += x * U[c * K + k];
  }
  return out;
};
const orth = (A, n) => {
  // modified Gram–Schmidt on the K columns of A [n × K]
  for (let k = 0; k < K; k++) {
    for (let q = 0; q < k; q++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += A[i * K + k] * A[i * K + q];
      for (let i = 0; i < n; i++) A[i * K + k] -= d * A[i * K + q];
    }
    let nrm = 0;
    for (let i = 0; i < n; i++) nrm += A[i * K + k] ** 2;
    nrm = Math.sqrt(nrm) || 1;
    for (let i = 0; i < n; i++) A[i * K + k] /= nrm;
  }
  return A;
};
let Om = Float64Array.from({ length: G * K }, () => rng() * 2 - 1);
let Q = orth(mulXV(Om), nC);
for (let it = 0; it < 4; it++) Q = orth(mulXV(orth(mulXtU(Q), G)), nC);
// B = Qᵀ X [K × G]; eigen-decompose B Bᵀ [K × K] (Jacobi) → U_b, S²
const Bt = mulXtU(Q); // [G × K] = (Qᵀ X)ᵀ
const M = new Float64Array(K * K);
for (let j = 0; j < G; j++) for (let a = 0; a < K; a++) for (let b = 0; b < K; b++) M[a * K + b] += Bt[j * K + a] * Bt[j * K + b];
const E = new Float64Array(K * K);
for (let i = 0; i < K; i++) E[i * K + i] = 1;
for (let sweep = 0; sweep < 60; sweep++) {
  let off = 0;
  for (let p = 0; p < K; p++) for (let q = p + 1; q < K; q++) off += M[p * K + q] ** 2;
  if (off < 1e-18) break;
  for (let p = 0; p < K; p++) for (let q = p + 1; q < K; q++) {
    const apq = M[p * K + q];
    if (Math.abs(apq) < 1e-30) continue;
    const theta = (M[q * K + q] - M[p * K + p]) / (2 * apq);
    const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
    const cs = 1 / Math.sqrt(t * t + 1), sn = t * cs;
    for (let k = 0; k < K; k++) {
      const mkp = M[k * K + p], mkq = M[k * K + q];
      M[k * K + p] = cs * mkp - sn * mkq;
      M[k * K + q] = sn * mkp + cs * mkq;
    }
    for (let k = 0; k < K; k++) {
      const mpk = M[p * K + k], mqk = M[q * K + k];
      M[p * K + k] = cs * mpk - sn * mqk;
      M[q * K + k] = sn * mpk + cs * mqk;
    }
    for (let k = 0; k < K; k++) {
      const ekp = E[k * K + p], ekq = E[k * K + q];
      E[k * K + p] = cs * ekp - sn * ekq;
      E[k * K + q] = sn * ekp + cs * ekq;
    }
  }
}
const order = Array.from({ length: K }, (_, i) => i).sort((a, b) => M[b * K + b] - M[a * K + a]);
// gene loadings: V S = Bᵀ U_b (column k of Bᵀ U_b = V_k s_k), / √(n − 1)
const lines = [
  `# gene embeddings: loadings on the top ${dim} principal components of ${path.basename(input)} ` +
    `(${nC} cells, ${G} genes detected in >= ${minCells} cells; log1p(CP10k), per-gene z-score clipped at 10; randomized SVD seed ${seed}). ` +
    `A stand-in for real gene vectors, built by scripts/gene-embeddings-pca.mjs`,
  `gene_id\t${Array.from({ length: dim }, (_, k) => `pc${k + 1}`).join("\t")}`,
];
const seen = new Set();
for (let j = 0; j < G; j++) {
  const id = String(ens[genes[j]]).toUpperCase().replace(/\.\d+$/, "");
  if (seen.has(id)) continue; // two var rows with one Ensembl ID: keep the first
  seen.add(id);
  const v = [];
  for (let k = 0; k < dim; k++) {
    const e = order[k];
    let s = 0;
    for (let a = 0; a < K; a++) s += Bt[j * K + a] * E[a * K + e];
    const x = s / Math.sqrt(nC - 1);
    v.push((Math.abs(x) < 5e-5 ? 0 : x).toFixed(4));
  }
  lines.push(`${id}\t${v.join("\t")}`);
}
fs.writeFileSync(output, lines.join("\n") + "\n");
const sha = crypto.createHash("sha256").update(fs.readFileSync(output)).digest("hex");
const sv = order.slice(0, dim).map((e) => Math.sqrt(Math.max(0, M[e * K + e]) / (nC - 1)).toFixed(2));
process.stderr.write(`${output}: ${seen.size} genes x ${dim} (${(fs.statSync(output).size / 1e6).toFixed(2)} MB, sha256 ${sha.slice(0, 12)}…); component sd ${sv.join(" ")}\n`);
