/**
 * Reader/writer of the safetensors format (HuggingFace `safetensors`, format spec in
 * https://github.com/huggingface/safetensors README): 8-byte little-endian header length N,
 * N bytes of JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`,
 * then the raw little-endian tensor bytes (offsets relative to the end of the header).
 * Files written here load with `safetensors.torch.load_file` and `transformers`.
 */
import * as fs from "node:fs";
import { writeFileAtomic } from "../io.js";

/** Element types supported here (safetensors names). */
export type SafetensorsDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** Typed arrays that hold tensor data. F16/BF16 are held as raw `Uint16Array` bits. */
export type TensorData = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/** One tensor in a safetensors file. */
export interface SafeTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

const BYTES: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

function makeArray(dtype: SafetensorsDtype, buf: ArrayBuffer, n: number): TensorData {
  switch (dtype) {
    case "F64": return new Float64Array(buf, 0, n);
    case "F32": return new Float32Array(buf, 0, n);
    case "F16":
    case "BF16": return new Uint16Array(buf, 0, n);
    case "I64": return new BigInt64Array(buf, 0, n);
    case "I32": return new Int32Array(buf, 0, n);
    case "I16": return new Int16Array(buf, 0, n);
    case "I8": return new Int8Array(buf, 0, n);
    case "U8":
    case "BOOL": return new Uint8Array(buf, 0, n);
  }
}

/**
 * Write tensors to a safetensors file atomically (temporary file + rename). Header keys are sorted
 * and the header padded with spaces to a multiple of 8 bytes, as the Rust/Python writers do.
 * @param metadata string → string pairs stored under `__metadata__` (e.g. `{format: "pt"}`)
 * @throws Error naming the tensor when its data length does not match its shape and dtype.
 */
export function writeSafetensors(path: string, tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const bytes = BYTES[t.dtype];
    if (bytes === undefined) throw new Error(`tensor ${name}: unsupported dtype ${t.dtype}`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new Error(`tensor ${name}: data has ${t.data.length} elements but shape [${t.shape}] needs ${n}`);
    if (t.data.BYTES_PER_ELEMENT !== bytes) throw new Error(`tensor ${name}: ${t.data.constructor.name} does not hold ${t.dtype}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n * bytes] };
    offset += n * bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  writeFileAtomic(path, out);
}

/** Contents of a safetensors file. */
export interface SafetensorsFile {
  tensors: Record<string, SafeTensor>;
  metadata: Record<string, string>;
}

/**
 * Read a whole safetensors file. Tensor data are copied into fresh, aligned typed arrays.
 * @throws Error naming the file when it is missing, truncated (shorter than its header or its data
 *   offsets say), has a header that is not valid JSON, or has data_offsets that break the format
 *   (negative, begin > end, overlapping, leaving a hole, not covering the data section exactly) or an
 *   unknown dtype. Messages never quote the file's bytes.
 */
export function readSafetensors(path: string): SafetensorsFile {
  if (!fs.existsSync(path)) throw new Error(`${path}: file not found`);
  const buf = fs.readFileSync(path);
  const bad = (msg: string) => new Error(`${path}: not a valid safetensors file (${msg})`);
  if (buf.length < 8) throw bad(`only ${buf.length} bytes, truncated`);
  const hlen = Number(buf.readBigUInt64LE(0));
  if (hlen <= 0 || 8 + hlen > buf.length) throw bad(`header length ${hlen} exceeds the file size ${buf.length}; truncated or corrupt`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString("utf8"));
  } catch {
    throw bad(`its ${hlen}-byte header is not JSON`); // the parser's message would quote the file's bytes
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw bad("header is not a JSON object");
  const dataStart = 8 + hlen;
  const dataLen = buf.length - dataStart;
  const tensors: Record<string, SafeTensor> = {};
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: string; shape?: number[]; data_offsets?: number[] };
    const dtype = e?.dtype as SafetensorsDtype;
    if (!(dtype in BYTES)) throw bad(`tensor ${name} has unknown dtype ${e?.dtype}`);
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isInteger(d) || d < 0)) throw bad(`tensor ${name} has an invalid shape`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || !(off[0] <= off[1])) {
      throw bad(`tensor ${name} has invalid data_offsets (the format requires two non-negative integers [begin, end], begin <= end)`);
    }
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (off[1] - off[0] !== n * BYTES[dtype]) {
      throw bad(`tensor ${name}: data_offsets span ${off[1] - off[0]} bytes but shape [${e.shape}] ${dtype} needs ${n * BYTES[dtype]}`);
    }
    if (off[1] > dataLen) throw bad(`tensor ${name} ends at byte ${off[1]} but the data section has ${dataLen} bytes; truncated`);
    spans.push([off[0], off[1], name]);
    const ab = new ArrayBuffer(off[1] - off[0]);
    new Uint8Array(ab).set(buf.subarray(dataStart + off[0], dataStart + off[1]));
    tensors[name] = { dtype, shape: e.shape, data: makeArray(dtype, ab, n) };
  }
  // the format: the tensors' byte ranges tile the data section exactly (no overlap, no hole, nothing after)
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let end = 0;
  for (let i = 0; i < spans.length; i++) {
    if (spans[i][0] < end) throw bad(`tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
    if (spans[i][0] > end) throw bad(`a hole of ${spans[i][0] - end} bytes before tensor ${spans[i][2]}: data_offsets must cover the data section exactly`);
    end = spans[i][1];
  }
  if (end !== dataLen) throw bad(`the tensors cover ${end} of the data section's ${dataLen} bytes; data_offsets must cover it exactly`);
  return { tensors, metadata };
}

/** Convert IEEE half (F16) or bfloat16 bits to float32. */
export function halfToFloat32(bits: Uint16Array, dtype: "F16" | "BF16"): Float32Array {
  const out = new Float32Array(bits.length);
  if (dtype === "BF16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
    return out;
  }
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    out[i] = e === 0 ? s * 2 ** -14 * (f / 1024) : e === 31 ? (f ? NaN : s * Infinity) : s * 2 ** (e - 15) * (1 + f / 1024);
  }
  return out;
}

/** Tensor data as float32 (F32 as is; F64/F16/BF16 converted). @throws Error for integer dtypes. */
export function toFloat32(t: SafeTensor, name = "tensor"): Float32Array {
  if (t.dtype === "F32") return t.data as Float32Array;
  if (t.dtype === "F64") return Float32Array.from(t.data as Float64Array);
  if (t.dtype === "F16" || t.dtype === "BF16") return halfToFloat32(t.data as Uint16Array, t.dtype);
  throw new Error(`${name} has dtype ${t.dtype}; a float tensor was expected`);
}
