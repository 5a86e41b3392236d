import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx } from 'onnx-proto';
import { UserError, fsError } from './errors.js';

/**
 * Reading ONNX models whose weights live in external data files, without loading those files:
 * the ModelProto is decoded with onnx-proto, and every initializer is described as either
 * inline bytes or a (file, offset, length) range resolved relative to the model file.
 */

export const OnnxProto = onnxProto.onnx;
export type ModelProto = onnx.ModelProto;
export type GraphProto = onnx.IGraphProto;
export type NodeProto = onnx.INodeProto;
export type TensorProto = onnx.ITensorProto;
export type AttributeProto = onnx.IAttributeProto;

/** onnx.TensorProto.DataType values used here. */
export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;

const ELEMENT_BYTES: Record<number, number> = {
  1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
};

export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, GRAPHS: 10 } as const;

const EXTERNAL = 1;

/** protobufjs gives int64 fields as Long objects (or numbers); models never need more than 2^53. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function elementBytes(dataType: number): number {
  const b = ELEMENT_BYTES[dataType];
  if (b === undefined) throw new UserError(`unsupported tensor data type ${dataType}`);
  return b;
}

export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d));
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Where an initializer's bytes are: in the proto, or a byte range of an external file. */
export type TensorBytes =
  | { kind: 'inline'; bytes: Uint8Array }
  | { kind: 'external'; file: string; offset: number; length: number };

export interface LoadedModel {
  /** Absolute path of the .onnx file. */
  path: string;
  model: ModelProto;
}

export async function loadModel(path: string): Promise<LoadedModel> {
  const abs = resolve(path);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(abs);
  } catch (err) {
    throw fsError('cannot read', abs, err);
  }
  let model: ModelProto;
  try {
    model = OnnxProto.ModelProto.decode(bytes);
  } catch (err) {
    throw new UserError(`${abs}: not an ONNX model (${(err as Error).message})`);
  }
  if (!model.graph) throw new UserError(`${abs}: ONNX model has no graph`);
  return { path: abs, model };
}

export function encodeModel(model: ModelProto): Uint8Array {
  return OnnxProto.ModelProto.encode(model).finish();
}

function externalEntries(t: TensorProto): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of t.externalData ?? []) if (e.key) m.set(e.key, e.value ?? '');
  return m;
}

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === EXTERNAL;
}

/**
 * Describes where an initializer's bytes are. External locations are resolved relative to the
 * model file's directory, as the ONNX spec says; typed fields (float_data, int64_data, ...) are
 * converted to little-endian raw bytes.
 */
export function tensorBytes(t: TensorProto, modelPath: string): TensorBytes {
  const name = t.name ?? '(unnamed)';
  const dataType = t.dataType ?? 0;
  const count = elementCount(dimsOf(t));
  if (isExternal(t)) {
    const ext = externalEntries(t);
    const location = ext.get('location');
    if (!location) throw new UserError(`${modelPath}: initializer ${name} is external but names no location`);
    if (isAbsolute(location)) throw new UserError(`${modelPath}: initializer ${name}: external data location must be relative, got ${location}`);
    const file = resolve(dirname(modelPath), location);
    const offset = Number(ext.get('offset') ?? '0');
    const expected = count * elementBytes(dataType);
    const length = ext.has('length') ? Number(ext.get('length')) : expected;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new UserError(`${modelPath}: initializer ${name}: bad external offset/length`);
    }
    if (length !== expected) {
      throw new UserError(`${modelPath}: initializer ${name}: external length ${length} does not match dims (${expected} bytes)`);
    }
    return { kind: 'external', file, offset, length };
  }
  if (t.rawData && t.rawData.byteLength > 0) return { kind: 'inline', bytes: t.rawData };
  return { kind: 'inline', bytes: typedFieldBytes(t, dataType, count) };
}

/** Converts the typed repeated fields of a TensorProto to raw little-endian bytes. */
function typedFieldBytes(t: TensorProto, dataType: number, count: number): Uint8Array {
  const out = new Uint8Array(count * elementBytes(dataType));
  const view = new DataView(out.buffer);
  const name = t.name ?? '(unnamed)';
  const need = (arr: ArrayLike<unknown> | null | undefined, field: string): ArrayLike<unknown> => {
    const a = arr ?? [];
    if (a.length !== count) throw new UserError(`initializer ${name}: ${field} has ${a.length} values, dims say ${count}`);
    return a;
  };
  switch (dataType) {
    case DataType.FLOAT: { const a = need(t.floatData, 'float_data'); for (let i = 0; i < count; i++) view.setFloat32(4 * i, a[i] as number, true); break; }
    case DataType.DOUBLE: { const a = need(t.doubleData, 'double_data'); for (let i = 0; i < count; i++) view.setFloat64(8 * i, a[i] as number, true); break; }
    case DataType.INT64: { const a = need(t.int64Data, 'int64_data'); for (let i = 0; i < count; i++) view.setBigInt64(8 * i, BigInt(String(a[i])), true); break; }
    case DataType.UINT64: { const a = need(t.uint64Data, 'uint64_data'); for (let i = 0; i < count; i++) view.setBigUint64(8 * i, BigInt(String(a[i])), true); break; }
    case DataType.INT32: { const a = need(t.int32Data, 'int32_data'); for (let i = 0; i < count; i++) view.setInt32(4 * i, a[i] as number, true); break; }
    case DataType.INT16: case DataType.INT8: case DataType.UINT16: case DataType.UINT8: case DataType.BOOL:
    case DataType.FLOAT16: case DataType.BFLOAT16: {
      // These are stored one value per int32_data entry (16-bit floats as their bit pattern).
      const a = need(t.int32Data, 'int32_data');
      const size = elementBytes(dataType);
      for (let i = 0; i < count; i++) {
        const v = a[i] as number;
        if (size === 1) view.setUint8(i, v & 0xff); else view.setUint16(2 * i, v & 0xffff, true);
      }
      break;
    }
    default:
      if (count === 0) break;
      throw new UserError(`initializer ${name}: data type ${dataType} without raw_data is not supported`);
  }
  return out;
}

/** Reads a byte range of a file synchronously (small constants during graph matching). */
export function readRangeSync(file: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  try {
    if (offset + length > fstatSync(fd).size) throw new UserError(`${file}: external data range ${offset}+${length} is past the end of the file`);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) throw new UserError(`${file}: unexpected end of file at byte ${offset + done}`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** The bytes of a tensor (inline or external). Only for small tensors: large ones are streamed. */
export function readTensorBytesSync(t: TensorProto, modelPath: string): Uint8Array {
  const src = tensorBytes(t, modelPath);
  return src.kind === 'inline' ? src.bytes : readRangeSync(src.file, src.offset, src.length);
}

/** Checks that every external range of a model lies inside its file (clear error up front). */
export async function checkExternalRanges(loaded: LoadedModel): Promise<void> {
  const sizes = new Map<string, number>();
  for (const t of loaded.model.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    const src = tensorBytes(t, loaded.path);
    if (src.kind !== 'external') continue;
    let size = sizes.get(src.file);
    if (size === undefined) {
      try {
        size = (await stat(src.file)).size;
      } catch (err) {
        throw fsError(`${loaded.path}: initializer ${t.name}: cannot read external data`, src.file, err);
      }
      sizes.set(src.file, size);
    }
    if (src.offset + src.length > size) {
      throw new UserError(`${loaded.path}: initializer ${t.name}: external range ${src.offset}+${src.length} is past the end of ${src.file} (${size} bytes)`);
    }
  }
}

/** A tensor's elements as float64 numbers (small constants only: eps, exponents, axes). */
export function constantValues(t: TensorProto, modelPath: string): number[] | null {
  const dataType = t.dataType ?? 0;
  const count = elementCount(dimsOf(t));
  if (count > 64) return null;
  const bytes = readTensorBytesSync(t, modelPath);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    switch (dataType) {
      case DataType.FLOAT: out.push(view.getFloat32(4 * i, true)); break;
      case DataType.DOUBLE: out.push(view.getFloat64(8 * i, true)); break;
      case DataType.INT64: out.push(Number(view.getBigInt64(8 * i, true))); break;
      case DataType.INT32: out.push(view.getInt32(4 * i, true)); break;
      case DataType.FLOAT16: out.push(f16ToNumber(view.getUint16(2 * i, true))); break;
      default: return null;
    }
  }
  return out;
}

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Looks up an attribute by name. */
export function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a ? toNumber(a.i) : fallback;
}

export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a ? (a.f ?? fallback) : fallback;
}

export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? (a.ints ?? []).map((v) => toNumber(v)) : undefined;
}

export function intAttr(name: string, value: number): AttributeProto {
  return { name, type: AttrType.INT, i: value };
}

export function floatAttr(name: string, value: number): AttributeProto {
  return { name, type: AttrType.FLOAT, f: value };
}

/** The opset version the model imports for a domain ('' = the default ONNX domain). */
export function opsetVersion(model: ModelProto, domain: string): number | undefined {
  for (const o of model.opsetImport ?? []) {
    const d = o.domain ?? '';
    if (d === domain || (domain === '' && d === 'ai.onnx')) return toNumber(o.version);
  }
  return undefined;
}

/** Adds an opset import for `domain` when the model lacks one. */
export function ensureOpset(model: ModelProto, domain: string, version: number): void {
  if (opsetVersion(model, domain) !== undefined) return;
  model.opsetImport = [...(model.opsetImport ?? []), OnnxProto.OperatorSetIdProto.create({ domain, version })];
}
