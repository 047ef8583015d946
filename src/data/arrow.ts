/**
 * apache-arrow, loaded from its single-file build (`apache-arrow/Arrow.esnext.min.js`, shipped in the
 * same npm package and version as the ES-module tree) instead of the ES-module tree (`Arrow.node.mjs`,
 * ~200 files). The API is the same; loading one file takes ~20 ms where resolving and compiling the
 * module tree takes ~170 ms on a 2-core machine, a large part of a small `cellfm tokenize`.
 *
 * Every cellfm module takes apache-arrow values from here (types may still come from
 * `import type ... from "apache-arrow"`), so all Arrow objects inside cellfm come from one copy of the
 * library (`instanceof` holds between them). Files are interchangeable with any Arrow reader, the
 * ES-module build of apache-arrow included (tested in test/data/arrow-build.test.ts).
 */
import { createRequire } from "node:module";
import type * as ArrowModule from "apache-arrow";

const require = createRequire(import.meta.url);

/** The apache-arrow namespace (same exports as `import * as arrow from "apache-arrow"`). */
export const arrow: typeof ArrowModule = require("apache-arrow/Arrow.esnext.min");

export const {
  AsyncByteQueue,
  Bool,
  Data,
  DataType,
  Field,
  FixedSizeList,
  Float32,
  Int32,
  List,
  RecordBatch,
  RecordBatchFileWriter,
  Schema,
  Table,
  Utf8,
  makeData,
  makeVector,
  tableFromArrays,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
} = arrow;
