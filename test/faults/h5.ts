/**
 * Hand-made `.h5ad` files for the matrix faults (issue 20 §4), written with h5wasm directly so a test
 * can store exactly the structure it probes (a wrong `shape` attribute, an index out of range, a
 * short var column...) in the AnnData on-disk layout (anndata.readthedocs.io, "On-disk format").
 * The counts come from data/tiny.h5ad (300 PBMC cells) unless given.
 */
import h5wasm from "h5wasm/node";
import { openCounts } from "../../src/data/open.js";
import { h5Ready } from "../../src/data/h5ad.js";

/** A CSR matrix with its obs/var, every part overridable. */
export interface RawH5ad {
  /** where the matrix goes: "X" (default), "raw/X", "layers/counts". */
  key?: string;
  /** "csr" (default: indptr over cells, indices = genes) or "csc" (indptr over genes, indices = cells). */
  encoding?: "csr" | "csc";
  shape: [number, number];
  indptr: ArrayLike<number>;
  indices: ArrayLike<number>;
  data: ArrayLike<number>;
  obsIndex: string[];
  varIndex: string[];
  /** var columns: strings (string-array) */
  varColumns?: Record<string, string[]>;
  /** obs categorical columns. */
  obsCategorical?: Record<string, { categories: string[]; codes: number[] }>;
}

/** The cells × genes CSR of data/tiny.h5ad with its obs index, var index, var ensembl_id and obs cell_type. */
export async function tinyCsr(): Promise<RawH5ad & { cellType: string[] }> {
  const src = await openCounts("data/tiny.h5ad");
  try {
    const c = [...src.chunks(src.nCells)][0];
    const cellType = src.obs.columns.cell_type as string[];
    const cats = [...new Set(cellType)].sort();
    return {
      shape: [src.nCells, src.nGenes],
      indptr: Array.from(c.indptr),
      indices: Array.from(c.indices),
      data: Array.from(c.data),
      obsIndex: [...src.obs.index],
      varIndex: [...src.var.index],
      varColumns: { ensembl_id: [...(src.var.columns.ensembl_id as string[])] },
      obsCategorical: { cell_type: { categories: cats, codes: cellType.map((t) => cats.indexOf(t)) } },
      cellType,
    };
  } finally {
    src.close();
  }
}

function strings(g: h5wasm.Group, name: string, values: string[]): void {
  const d = g.create_dataset({ name, data: values });
  d.create_attribute("encoding-type", "string-array");
  d.create_attribute("encoding-version", "0.2.0");
}

function frame(h5: h5wasm.File, key: string, index: string[], cols: Record<string, string[]> = {}, cats: RawH5ad["obsCategorical"] = {}): void {
  const g = h5.create_group(key);
  g.create_attribute("encoding-type", "dataframe");
  g.create_attribute("encoding-version", "0.2.0");
  g.create_attribute("_index", "_index");
  const names = [...Object.keys(cols), ...Object.keys(cats ?? {})];
  if (names.length) g.create_attribute("column-order", names);
  else g.create_attribute("column-order", new Float64Array(0));
  strings(g, "_index", index);
  for (const [n, v] of Object.entries(cols)) strings(g, n, v);
  for (const [n, c] of Object.entries(cats ?? {})) {
    const cg = g.create_group(n);
    cg.create_attribute("encoding-type", "categorical");
    cg.create_attribute("encoding-version", "0.2.0");
    cg.create_attribute("ordered", 0);
    strings(cg, "categories", c.categories);
    cg.create_dataset({ name: "codes", data: Int8Array.from(c.codes) });
  }
}

/** Write `m` as an `.h5ad` exactly as given (no checks: the point is to store broken structures). */
export async function writeRawH5ad(file: string, m: RawH5ad): Promise<void> {
  await h5Ready();
  const h5 = new h5wasm.File(file, "w");
  try {
    const key = m.key ?? "X";
    if (key.includes("/")) h5.create_group(key.split("/")[0]);
    const X = h5.create_group(key);
    X.create_attribute("encoding-type", `${m.encoding ?? "csr"}_matrix`);
    X.create_attribute("encoding-version", "0.1.0");
    X.create_attribute("shape", new BigInt64Array(m.shape.map(BigInt)));
    X.create_dataset({ name: "data", data: Float32Array.from(m.data) });
    X.create_dataset({ name: "indices", data: Int32Array.from(m.indices) });
    X.create_dataset({ name: "indptr", data: BigInt64Array.from(Array.from(m.indptr, (x) => BigInt(x))) });
    frame(h5, "obs", m.obsIndex, {}, m.obsCategorical);
    frame(h5, "var", m.varIndex, m.varColumns);
    if (key === "raw/X") frame(h5, "raw/var", m.varIndex, m.varColumns);
  } finally {
    h5.close();
  }
}

/** The same matrix stored by genes (CSC). */
export function toCsc(m: RawH5ad): RawH5ad {
  const [nCells, nGenes] = m.shape;
  const count = new Array<number>(nGenes + 1).fill(0);
  for (let k = 0; k < m.indices.length; k++) count[m.indices[k] + 1]++;
  for (let g = 0; g < nGenes; g++) count[g + 1] += count[g];
  const fill = count.slice();
  const indices = new Array<number>(m.indices.length);
  const data = new Array<number>(m.indices.length);
  for (let c = 0; c < nCells; c++) {
    for (let k = m.indptr[c]; k < m.indptr[c + 1]; k++) {
      const o = fill[m.indices[k]]++;
      indices[o] = c;
      data[o] = m.data[k];
    }
  }
  return { ...m, encoding: "csc", indptr: count, indices, data };
}
