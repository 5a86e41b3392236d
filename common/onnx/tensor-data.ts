import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { UserError, fsError } from '../errors.js';
import { f16ToF32 } from '../float16.js';
import { readRange, readRangeSync } from './byte-range.js';
import { DataType, dimsOf, elementBytes, elementCount, onnx, type TensorProto } from './proto.js';

/**
 * Where an initializer's bytes are, and the one way to point an initializer at external data.
 * External locations are resolved relative to the model file's directory, as the ONNX spec says;
 * typed fields (float_data, int64_data, ...) are converted to little-endian raw bytes.
 */

/** Where a tensor's bytes are: in the proto, or a byte range of an external file. */
export type TensorBytes =
  | { kind: 'inline'; bytes: Uint8Array }
  | { kind: 'external'; file: string; offset: number; length: number };

/** A tensor's byte range inside an external-data file. */
export interface Placement {
  offset: number;
  length: number;
}

const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === EXTERNAL;
}

/**
 * Points an initializer at `placement` in the data file `location` (relative to the model file),
 * dropping any inline data it had.
 */
export function markExternal<T extends TensorProto>(t: T, location: string, placement: Placement): T {
  t.dataLocation = EXTERNAL;
  t.externalData = [
    { key: 'location', value: location },
    { key: 'offset', value: String(placement.offset) },
    { key: 'length', value: String(placement.length) },
  ];
  delete t.rawData;
  for (const f of ['floatData', 'int32Data', 'int64Data', 'doubleData', 'uint64Data', 'stringData'] as const) {
    if (t[f] && (t[f] as unknown[]).length) (t as Record<string, unknown>)[f] = [];
  }
  return t;
}

function externalEntries(t: TensorProto): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of t.externalData ?? []) if (e.key) m.set(e.key, e.value ?? '');
  return m;
}

/** Describes where an initializer's bytes are (checking the external entries against its dims). */
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

/** Identity of a tensor's bytes: its file range, or (inline) a hash of its content. */
export function sourceId(src: TensorBytes): string {
  return src.kind === 'external'
    ? `${src.file}|${src.offset}|${src.length}`
    : `inline:${createHash('sha256').update(src.bytes).digest('hex')}`;
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

/** The bytes of a tensor (inline or external). Only for small tensors: large ones are streamed. */
export function readTensorBytesSync(t: TensorProto, modelPath: string): Uint8Array {
  const src = tensorBytes(t, modelPath);
  return src.kind === 'inline' ? src.bytes : readRangeSync(src.file, src.offset, src.length);
}

/** `count` float32 values starting at element `start` of a float32 tensor. */
export async function readFloat32s(src: TensorBytes, start: number, count: number): Promise<Float32Array> {
  const out = new Float32Array(count);
  const bytes = new Uint8Array(out.buffer);
  if (src.kind === 'inline') bytes.set(src.bytes.subarray(4 * start, 4 * (start + count)));
  else await readRange(src.file, src.offset + 4 * start, bytes);
  return out;
}

/** Checks that every external range of `initializers` lies inside its file (clear error up front). */
export async function checkTensorRanges(initializers: readonly TensorProto[], modelPath: string): Promise<void> {
  const sizes = new Map<string, number>();
  for (const t of initializers) {
    if (!isExternal(t)) continue;
    const src = tensorBytes(t, modelPath);
    if (src.kind !== 'external') continue;
    let size = sizes.get(src.file);
    if (size === undefined) {
      try {
        size = (await stat(src.file)).size;
      } catch (err) {
        throw fsError(`${modelPath}: initializer ${t.name}: cannot read external data`, src.file, err);
      }
      sizes.set(src.file, size);
    }
    if (src.offset + src.length > size) {
      throw new UserError(`${modelPath}: initializer ${t.name}: external range ${src.offset}+${src.length} is past the end of ${src.file} (${size} bytes)`);
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
      case DataType.FLOAT16: out.push(f16ToF32(view.getUint16(2 * i, true))); break;
      default: return null;
    }
  }
  return out;
}
