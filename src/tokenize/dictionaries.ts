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
  /**
   * The three maps composed for the tokenizer's gene plan: `sourceToken` = upper-cased input ID → token id
   * (`tokens.get(mapping.get(id))`), `medianOfToken[t]` = `medians.get(names[t])` (NaN where none),
   * `names[t]` = the gene of token t. (With the bundled dictionaries, `tokens`, `medians` and `mapping`
   * are built from these on first access.)
   */
  lookup: { sourceToken: Map<string, number>; medianOfToken: Float64Array; names: string[] };
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
 *
 * The bundled dictionaries load from their pre-parsed compact form (`data/geneformer/compact_<corpus>.json`,
 * built from the TSVs by `scripts/build-compact-dictionaries.mjs`; test/tokenize/dictionaries.test.ts
 * checks it equals the TSVs entry for entry, in order, with the TSVs' sha256), which takes a few
 * milliseconds where parsing the TSVs takes tens. A `dir` is always read from its TSVs.
 * @param dir folder with `token_dictionary_<corpus>.tsv`, `gene_median_<corpus>.tsv`,
 *   `ensembl_mapping_<corpus>.tsv` (default: the bundled `data/geneformer/`).
 * @throws Error naming the file if one is missing or a token gene has no median.
 */
export function loadGeneformerDictionaries(version: GeneformerVersion, dir?: string): GeneformerDictionaries {
  if (version !== "V1" && version !== "V2") throw new Error(`unknown Geneformer model version "${String(version)}" (use V1 or V2)`);
  const key = dir === undefined ? `${version}\u0000compact` : `${version}\u0000${path.resolve(dir)}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let d: GeneformerDictionaries | undefined;
  if (dir === undefined) d = loadCompact(version);
  d ??= loadGeneformerDictionariesTsv(version, dir ?? packagePath("data", "geneformer"));
  cache.set(key, d);
  return d;
}

/** Version-dependent fields of {@link GeneformerDictionaries}; each map is given built or as a function building it on first access. */
function assemble(
  version: GeneformerVersion,
  names: string[],
  lookup: GeneformerDictionaries["lookup"],
  maps: { tokens: Map<string, number> | (() => Map<string, number>); medians: Map<string, number> | (() => Map<string, number>); mapping: Map<string, string> | (() => Map<string, string>) },
  files: GeneformerDictionaries["files"],
): GeneformerDictionaries {
  const at = (name: string): number | undefined => {
    const i = names.indexOf(name);
    return i < 0 ? undefined : i;
  };
  const d = {
    version,
    vocabSize: names.length,
    special: { pad: at("<pad>") ?? 0, mask: at("<mask>") ?? 1, cls: at("<cls>"), eos: at("<eos>") },
    maxGenes: version === "V1" ? 2048 : 4094,
    modelInputSize: version === "V1" ? 2048 : 4096,
    lookup,
    files,
  } as GeneformerDictionaries;
  for (const key of ["tokens", "medians", "mapping"] as const) {
    const m = maps[key];
    if (typeof m !== "function") {
      Object.defineProperty(d, key, { value: m, enumerable: true });
      continue;
    }
    let built: unknown;
    Object.defineProperty(d, key, { enumerable: true, get: () => (built ??= m()) });
  }
  return d;
}

/**
 * Load the dictionaries of `version` by parsing the three TSVs in `dir` (see {@link loadGeneformerDictionaries}).
 * @throws Error naming the file if one is missing.
 */
export function loadGeneformerDictionariesTsv(version: GeneformerVersion, dir: string): GeneformerDictionaries {
  const c = CORPUS[version];
  const tokFile = path.join(dir, `token_dictionary_${c}.tsv`);
  const medFile = path.join(dir, `gene_median_${c}.tsv`);
  const mapFile = path.join(dir, `ensembl_mapping_${c}.tsv`);
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
  const names = new Array<string>(vocabSize).fill("");
  for (const [name, id] of tokens) names[id] = name;
  const medianOfToken = new Float64Array(vocabSize).fill(NaN);
  for (const [gene, m] of medians) medianOfToken[tokens.get(gene)!] = m;
  const sourceToken = new Map<string, number>();
  for (const [src, dst] of mapping) sourceToken.set(src, tokens.get(dst)!);
  return assemble(version, names, { sourceToken, medianOfToken, names }, { tokens, medians, mapping }, {
    tokens: { name: path.basename(tokFile), sha256: tok.sha256 },
    medians: { name: path.basename(medFile), sha256: med.sha256 },
    mapping: { name: path.basename(mapFile), sha256: mp.sha256 },
  });
}

/**
 * The pre-parsed form of one version's dictionaries (`data/geneformer/compact_<corpus>.json`): the same
 * entries, in the same order, as the TSVs give ({@link loadGeneformerDictionariesTsv}).
 */
export interface CompactDictionaries {
  format: "cellfm-geneformer-dictionaries";
  format_version: 1;
  version: GeneformerVersion;
  /** names and sha256 of the TSVs this was built from (what a tokenized dataset's manifest records). */
  files: GeneformerDictionaries["files"];
  /** token names in token-id order (`names[i]` has token id i; the ids are 0 … n−1), joined by `\n`. */
  names: string;
  /** token ids of the `medians` entries, in their order. */
  median_tokens: number[];
  /** the medians (float64, as JSON numbers: exact), aligned with `median_tokens`. */
  median_values: number[];
  /** target token id of each `mapping` entry, in order. */
  mapping_tokens: number[];
  /** source ID of each `mapping` entry, joined by `\n`; empty where the source is the target's own name. */
  mapping_sources: string;
}

/**
 * The compact form of loaded dictionaries (written by `scripts/build-compact-dictionaries.mjs`).
 * @throws Error if the token ids are not 0 … n−1 (the compact form stores names by id).
 */
export function compactDictionaries(d: GeneformerDictionaries): CompactDictionaries {
  const names: string[] = [];
  let i = 0;
  for (const [name, id] of d.tokens) {
    if (id !== i++) throw new Error(`${d.files.tokens.name}: token ids are not 0..n-1 in order (${name} has ${id}); no compact form`);
    names.push(name);
  }
  if (names.length !== d.vocabSize) throw new Error(`${d.files.tokens.name}: ${names.length} tokens for vocabulary size ${d.vocabSize}`);
  const medianTokens: number[] = [];
  const medianValues: number[] = [];
  for (const [gene, m] of d.medians) {
    medianTokens.push(d.tokens.get(gene)!);
    medianValues.push(m);
  }
  const mappingTokens: number[] = [];
  const mappingSources: string[] = [];
  for (const [src, dst] of d.mapping) {
    mappingTokens.push(d.tokens.get(dst)!);
    mappingSources.push(src === dst ? "" : src);
  }
  return {
    format: "cellfm-geneformer-dictionaries",
    format_version: 1,
    version: d.version,
    files: d.files,
    names: names.join("\n"),
    median_tokens: medianTokens,
    median_values: medianValues,
    mapping_tokens: mappingTokens,
    mapping_sources: mappingSources.join("\n"),
  };
}

/** File name of the compact form of a version's bundled dictionaries (in `data/geneformer/`). */
export function compactFileName(version: GeneformerVersion): string {
  return `compact_${CORPUS[version]}.json`;
}

/** The bundled dictionaries from their compact form, or undefined when it is absent (then the TSVs are read). */
function loadCompact(version: GeneformerVersion): GeneformerDictionaries | undefined {
  const file = packagePath("data", "geneformer", compactFileName(version));
  let text: string;
  try {
    text = fs.readFileSync(file, "latin1"); // ASCII content (JSON escapes anything else)
  } catch {
    return undefined;
  }
  const c = JSON.parse(text) as CompactDictionaries;
  if (c.format !== "cellfm-geneformer-dictionaries" || c.format_version !== 1 || c.version !== version) {
    throw new Error(`${file}: not a compact ${version} Geneformer dictionary file; rebuild it with scripts/build-compact-dictionaries.mjs`);
  }
  const names = c.names.split("\n");
  const mt = c.median_tokens;
  const mv = c.median_values;
  const medianOfToken = new Float64Array(names.length).fill(NaN);
  for (let i = 0; i < mt.length; i++) medianOfToken[mt[i]] = mv[i];
  const pt = c.mapping_tokens;
  const ps = c.mapping_sources.split("\n");
  if (ps.length !== pt.length) throw new Error(`${file}: mapping_sources and mapping_tokens differ in length; rebuild it`);
  const sourceToken = new Map<string, number>();
  for (let i = 0; i < pt.length; i++) sourceToken.set(ps[i] === "" ? names[pt[i]] : ps[i], pt[i]);
  // the three maps in their TSV order, built when first used (the tokenizer needs only the lookup)
  const tokens = (): Map<string, number> => {
    const m = new Map<string, number>();
    for (let i = 0; i < names.length; i++) m.set(names[i], i);
    return m;
  };
  const medians = (): Map<string, number> => {
    const m = new Map<string, number>();
    for (let i = 0; i < mt.length; i++) m.set(names[mt[i]], mv[i]);
    return m;
  };
  const mapping = (): Map<string, string> => {
    const m = new Map<string, string>();
    for (let i = 0; i < pt.length; i++) m.set(ps[i] === "" ? names[pt[i]] : ps[i], names[pt[i]]);
    return m;
  };
  return assemble(version, names, { sourceToken, medianOfToken, names }, { tokens, medians, mapping }, c.files);
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
