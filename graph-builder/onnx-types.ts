/**
 * The small vocabulary every graph-builder module shares: element types, dims, and the
 * onnx-proto namespace (onnx-proto is CommonJS; its default export holds `onnx`).
 *
 * Usage:
 *   import { onnx, type DType, type Dim, dataTypeOf, bytesPerElement } from './onnx-types.js';
 *   const t = onnx.TensorProto.create({ name: 'w', dims: [2, 3], dataType: dataTypeOf('float32') });
 */
import type { onnx as O } from 'onnx-proto';
import { OnnxProto } from '../common/onnx-model.js';

export const onnx = OnnxProto;

export type ITensorProto = O.ITensorProto;
export type INodeProto = O.INodeProto;
export type IGraphProto = O.IGraphProto;
export type IModelProto = O.IModelProto;
export type IValueInfoProto = O.IValueInfoProto;
export type IAttributeProto = O.IAttributeProto;
export type ModelProto = O.ModelProto;
export type TensorProto = O.TensorProto;

/** Element types the builders use. */
export type DType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';

/** A tensor dimension: a fixed size or a named dynamic axis (`'batch'`, `'seq'`). */
export type Dim = number | string;

const DATA_TYPES: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  int8: onnx.TensorProto.DataType.INT8,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
};

const BYTES: Record<DType, number> = {
  float32: 4, float16: 2, float64: 8, int64: 8, int32: 4, int8: 1, uint8: 1, bool: 1,
};

/** The `TensorProto.DataType` number of a dtype. */
export function dataTypeOf(dtype: DType): number {
  return DATA_TYPES[dtype];
}

/** The dtype of a `TensorProto.DataType` number (throws on types the builders never use). */
export function dtypeOfDataType(dataType: number): DType {
  for (const [k, v] of Object.entries(DATA_TYPES)) if (v === dataType) return k as DType;
  throw new Error(`unsupported ONNX data type ${dataType}`);
}

export function bytesPerElement(dtype: DType): number {
  return BYTES[dtype];
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** The little-endian bytes of a typed array, copied (so the caller may reuse its buffer). */
export function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

/** A view (no copy) of a typed array's bytes. */
export function bytesView(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
