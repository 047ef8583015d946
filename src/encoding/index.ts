/**
 * The registry of input encodings: one row per encoding (`./rank.ts`, `./binned.ts`, `./counts.ts`;
 * the interface is `./types.ts`). Everything that depends on the encoding asks it here: by its short
 * name ({@link encodingByKey}: `cellfm tokenize --encoding`, compare arms), or by the name a tokenized
 * dataset or a checkpoint records ({@link encodingOf}).
 */
import { BINNED } from "./binned.js";
import { COUNTS } from "./counts.js";
import { RANK } from "./rank.js";
import type { Encoding } from "./types.js";

export type { BenchmarkContextOptions, BenchmarkContexts, Encoding, EncodingModel, GeneContext } from "./types.js";
export { BINNED, COUNTS, RANK };

/** Every encoding, in the order tables and messages list them. */
export const ENCODINGS = [RANK, BINNED, COUNTS] as const;

/** Short name of an encoding (`rank`, `binned`, `counts`). */
export type EncodingKey = (typeof ENCODINGS)[number]["key"];

/** The short names, in registry order (for zod enums, CLI choices and messages). */
export const ENCODING_KEYS = ENCODINGS.map((e) => e.key) as unknown as readonly [EncodingKey, ...EncodingKey[]];

/** The encoding of a short name, or undefined. */
export function encodingByKey(key: string): Encoding<EncodingKey> | undefined {
  return ENCODINGS.find((e) => e.key === key);
}

/** The encoding a manifest / checkpoint name (`geneformer-rank-value`) stands for, or undefined. */
export function encodingByName(name: string): Encoding<EncodingKey> | undefined {
  return ENCODINGS.find((e) => e.name === name);
}

/**
 * The encoding of a tokenized dataset's manifest (`{ encoding }`), a checkpoint's `cellfm` block or a
 * loaded checkpoint (`{ cellfm: { encoding } }`), or a model spec.
 * @param where prefix of the message (the file or folder).
 * @throws Error naming the unknown encoding and the known ones.
 */
export function encodingOf(x: { encoding: string } | { cellfm: { encoding: string } }, where = "input"): Encoding<EncodingKey> {
  const name = "cellfm" in x ? x.cellfm.encoding : x.encoding;
  const e = encodingByName(name);
  if (!e) throw new Error(`${where}: unknown encoding "${name}" (known: ${ENCODINGS.map((k) => k.name).join(", ")})`);
  return e;
}
