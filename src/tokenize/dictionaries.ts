/**
 * Geneformer dictionaries, bundled as TSV under `data/geneformer/` (converted from the upstream
 * pickles; see `data/geneformer/README.md`): token dictionary, gene nonzero medians and the ID
 * mapping (collapse) table, for V1 (Genecorpus-30M, `*_gc30M`) and V2 (Genecorpus-104M, `*_gc104M`).
 * Source: Geneformer `geneformer/tokenizer.py@05fcbeb` (`TranscriptomeTokenizer.__init__`).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { packagePath } from "../io.js";

/** Geneformer model generation. */
export type GeneformerVersion = "V1" | "V2";

/** Loaded dictionaries of one Geneformer version. */
export interface GeneformerDictionaries {
  version: GeneformerVersion;
  /** Ensembl ID → token id (special tokens `<pad>`, `<mask>`, V2 `<cls>`, `<eos>` included). */
  tokens: Map<string, number>;
  /** Ensembl ID → nonzero median (float64) for genes of the token dictionary. */
  medians: Map<string, number>;
  /** upper-cased input ID (Ensembl ID, or V2 gene symbol) → Ensembl ID of the token dictionary; restricted to targets in `tokens`. */
  mapping: Map<string, string>;
  /** vocabulary size (number of token ids). */
  vocabSize: number;
  /** special token ids. */
  special: { pad: number; mask: number; cls?: number; eos?: number };
  /** number of gene tokens kept per cell: 2,048 (V1) or 4,094 (V2, plus `<cls>`/`<eos>`). */
  maxGenes: number;
  /** model input size: 2,048 (V1) or 4,096 (V2). */
  modelInputSize: number;
  /** file names and sha256 (hex) of the three dictionaries. */
  files: {
    tokens: { name: string; sha256: string };
    medians: { name: string; sha256: string };
    mapping: { name: string; sha256: string };
  };
}

/** Corpus suffix of each version's files. */
export const CORPUS: Record<GeneformerVersion, string> = { V1: "gc30M", V2: "gc104M" };

function sha256(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex");
}

/**
 * Parse a two-column TSV with a header, calling `row(col0, col1)` per line (no per-row arrays).
 * Read as latin1: the dictionaries are ASCII, and latin1 decoding is much cheaper than UTF-8.
 */
function readPairs(file: string, row: (a: string, b: string) => void, encoding: BufferEncoding = "latin1"): { sha256: string } {
  if (!fs.existsSync(file)) throw new Error(`${file}: dictionary file not found`);
  const buf = fs.readFileSync(file);
  const text = buf.toString(encoding);
  const n = text.length;
  let pos = text.indexOf("\n") + 1; // skip header
  if (pos === 0) pos = n;
  while (pos < n) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = n;
    const tab = text.indexOf("\t", pos);
    if (tab > pos && tab < end) {
      const e2 = text.charCodeAt(end - 1) === 13 ? end - 1 : end;
      row(text.slice(pos, tab), text.slice(tab + 1, e2));
    }
    pos = end + 1;
  }
  return { sha256: sha256(buf) };
}

/**
 * Read a nonzero-median TSV (`ensembl_id<TAB>nonzero_median`, header row), e.g. written by
 * `cellfm medians`. Values are parsed as float64.
 * @throws Error naming the file on a missing file or a non-numeric median.
 */
export function readMediansTsv(file: string): { medians: Map<string, number>; sha256: string } {
  const medians = new Map<string, number>();
  const { sha256: sum } = readPairs(
    file,
    (id, v) => {
      const x = Number(v);
      if (!(x > 0) || !Number.isFinite(x)) throw new Error(`${file}: median of ${id} is "${v}", expected a positive number`);
      medians.set(id, x);
    },
    "utf8",
  );
  return { medians, sha256: sum };
}

const cache = new Map<string, GeneformerDictionaries>();

/**
 * Load the V1 or V2 Geneformer dictionaries (cached per process).
 * @param dir folder with `token_dictionary_<corpus>.tsv`, `gene_median_<corpus>.tsv`,
 *   `ensembl_mapping_<corpus>.tsv` (default: the bundled `data/geneformer/`).
 * @throws Error naming the file if one is missing or a token gene has no median.
 */
export function loadGeneformerDictionaries(version: GeneformerVersion, dir?: string): GeneformerDictionaries {
  if (version !== "V1" && version !== "V2") throw new Error(`unknown Geneformer model version "${String(version)}" (use V1 or V2)`);
  const base = dir ?? packagePath("data", "geneformer");
  const key = `${version}\u0000${path.resolve(base)}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const c = CORPUS[version];
  const tokFile = path.join(base, `token_dictionary_${c}.tsv`);
  const medFile = path.join(base, `gene_median_${c}.tsv`);
  const mapFile = path.join(base, `ensembl_mapping_${c}.tsv`);
  const tokens = new Map<string, number>();
  let vocabSize = 0;
  const tok = readPairs(tokFile, (id, name) => {
    const t = Number(id);
    tokens.set(name, t);
    if (t + 1 > vocabSize) vocabSize = t + 1;
  });
  const medians = new Map<string, number>();
  const med = readPairs(medFile, (id, v) => {
    if (tokens.has(id)) medians.set(id, Number(v));
  });
  const mapping = new Map<string, string>();
  const mp = readPairs(mapFile, (src, dst) => {
    if (tokens.has(dst)) mapping.set(src, dst);
  });
  const special = {
    pad: tokens.get("<pad>") ?? 0,
    mask: tokens.get("<mask>") ?? 1,
    cls: tokens.get("<cls>"),
    eos: tokens.get("<eos>"),
  };
  const d: GeneformerDictionaries = {
    version,
    tokens,
    medians,
    mapping,
    vocabSize,
    special,
    maxGenes: version === "V1" ? 2048 : 4094,
    modelInputSize: version === "V1" ? 2048 : 4096,
    files: {
      tokens: { name: path.basename(tokFile), sha256: tok.sha256 },
      medians: { name: path.basename(medFile), sha256: med.sha256 },
      mapping: { name: path.basename(mapFile), sha256: mp.sha256 },
    },
  };
  cache.set(key, d);
  return d;
}

/** Vocabulary facts a model needs from a tokenized dataset: size and special-token ids. */
export interface Vocabulary {
  /** Number of token ids (rows of the embedding table). */
  size: number;
  /** `<pad>` id. */
  pad: number;
  /** `<mask>` id. */
  mask: number;
  /** `<cls>` id (Geneformer V2), when the dictionary has one. */
  cls?: number;
  /** `<eos>` id (Geneformer V2), when the dictionary has one. */
  eos?: number;
  /** Where the facts came from (for messages). */
  source: string;
}

/**
 * The vocabulary of a tokenized dataset: the manifest's `vocabulary` block when it records one,
 * else the bundled Geneformer dictionary of its `model_version` (V1 gc30M: 25,426 tokens, `<pad>` 0,
 * `<mask>` 1; V2 gc104M: 20,275 tokens, also `<cls>` 2, `<eos>` 3).
 * @param where the dataset folder, for the error message
 * @throws Error when the manifest records neither a vocabulary nor a Geneformer model version.
 */
export function vocabularyOf(
  manifest: { model_version?: string; vocabulary?: Omit<Vocabulary, "source"> },
  where: string,
): Vocabulary {
  if (manifest.vocabulary) return { ...manifest.vocabulary, source: `${where}/manifest.json vocabulary` };
  const mv = manifest.model_version;
  if (mv === "V1" || mv === "V2") {
    const d = loadGeneformerDictionaries(mv);
    return { size: d.vocabSize, ...d.special, source: `the ${mv} dictionary ${d.files.tokens.name}` };
  }
  throw new Error(`${where}/manifest.json: records neither a vocabulary nor a Geneformer model_version (V1/V2); re-tokenize with cellfm tokenize`);
}
