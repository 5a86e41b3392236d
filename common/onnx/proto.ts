import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { UserError } from '../errors.js';

/**
 * The ONNX vocabulary every stage shares: the onnx-proto namespace, the proto types, the one
 * element-type table, and small helpers whose names say what they do: `read*Attribute` read an
 * attribute of a node, `make*Attribute` build one; `copyBytes` copies a typed array's bytes,
 * `viewBytes` views them.
 *
 * Usage:
 *   import { onnx, DataType, readIntAttribute, makeIntAttribute } from '../common/onnx/index.js';
 *   const axis = readIntAttribute(node, 'axis', -1);
 *   node.attribute.push(makeIntAttribute('axis', axis));
 */

/** The onnx-proto namespace (onnx-proto is CommonJS; its default export holds `onnx`). */
export const onnx = onnxProto.onnx;

// Proto shapes as protobufjs gives them: interfaces whose fields may be absent.
export type ModelProto = O.ModelProto;
export type GraphProto = O.IGraphProto;
export type NodeProto = O.INodeProto;
export type TensorProto = O.ITensorProto;
export type AttributeProto = O.IAttributeProto;
export type ValueInfoProto = O.IValueInfoProto;

/**
 * A node, initializer and graph as a decoded file always has them (protobufjs fills repeated
 * fields with arrays and scalars with their defaults): what `loadModel` hands the passes, so they
 * need no `!` or `?? []`. Nodes and initializers a pass creates must give these fields too.
 */
export interface Node extends NodeProto {
  name: string;
  opType: string;
  domain: string;
  input: string[];
  output: string[];
  attribute: AttributeProto[];
}
export interface Tensor extends TensorProto {
  name: string;
  dataType: NonNullable<TensorProto['dataType']>;
  dims: NonNullable<TensorProto['dims']>;
}
export interface Graph extends GraphProto {
  node: Node[];
  initializer: Tensor[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo: ValueInfoProto[];
}

/** onnx.TensorProto.DataType (FLOAT = 1, UINT8 = 2, ...). */
export const DataType = onnx.TensorProto.DataType;
/** onnx.AttributeProto.AttributeType (FLOAT = 1, INT = 2, ...). */
export const AttrType = onnx.AttributeProto.AttributeType;

/** The one element-type table: a short name, its ONNX data type and its size in bytes. */
const ELEMENT_TYPES = {
  float32: { dataType: DataType.FLOAT, bytes: 4 },
  uint8: { dataType: DataType.UINT8, bytes: 1 },
  int8: { dataType: DataType.INT8, bytes: 1 },
  uint16: { dataType: DataType.UINT16, bytes: 2 },
  int16: { dataType: DataType.INT16, bytes: 2 },
  int32: { dataType: DataType.INT32, bytes: 4 },
  int64: { dataType: DataType.INT64, bytes: 8 },
  bool: { dataType: DataType.BOOL, bytes: 1 },
  float16: { dataType: DataType.FLOAT16, bytes: 2 },
  float64: { dataType: DataType.DOUBLE, bytes: 8 },
  uint32: { dataType: DataType.UINT32, bytes: 4 },
  uint64: { dataType: DataType.UINT64, bytes: 8 },
  bfloat16: { dataType: DataType.BFLOAT16, bytes: 2 },
} as const;

/** Element types by short name ('float32', 'int64', ...). */
export type DType = keyof typeof ELEMENT_TYPES;

/** A tensor dimension: a fixed size or a named dynamic axis (`'batch'`, `'seq'`). */
export type Dim = number | string;

// The reverse direction, derived from the table.
const BY_DATA_TYPE = new Map<number, { dtype: DType; bytes: number }>(
  (Object.keys(ELEMENT_TYPES) as DType[]).map((dtype) => [ELEMENT_TYPES[dtype].dataType, { dtype, bytes: ELEMENT_TYPES[dtype].bytes }]),
);

/** The `TensorProto.DataType` number of a dtype. */
export function dataTypeOf(dtype: DType): number {
  return ELEMENT_TYPES[dtype].dataType;
}

/** The dtype of a `TensorProto.DataType` number (UserError on types without a fixed size). */
export function dtypeOf(dataType: number): DType {
  const e = BY_DATA_TYPE.get(dataType);
  if (!e) throw new UserError(`unsupported tensor data type ${dataType}`);
  return e.dtype;
}

export function bytesPerElement(dtype: DType): number {
  return ELEMENT_TYPES[dtype].bytes;
}

/** Bytes per element of a `TensorProto.DataType` number (UserError on types without a fixed size). */
export function elementBytes(dataType: number): number {
  return bytesPerElement(dtypeOf(dataType));
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** protobufjs gives int64 fields as Long objects (or numbers); models never need more than 2^53. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d));
}

/** The little-endian bytes of a typed array, copied (the caller may reuse its buffer). */
export function copyBytes(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

/** A view (no copy) of a typed array's bytes. */
export function viewBytes(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// Reading attributes of a node.

export function readAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function readIntAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = readAttribute(node, name);
  return a ? toNumber(a.i) : fallback;
}

export function readFloatAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = readAttribute(node, name);
  return a ? (a.f ?? fallback) : fallback;
}

export function readIntsAttribute(node: NodeProto, name: string): number[] | undefined {
  const a = readAttribute(node, name);
  return a ? (a.ints ?? []).map((v) => toNumber(v)) : undefined;
}

// Building attributes.

export function makeIntAttribute(name: string, value: number): AttributeProto {
  return { name, type: AttrType.INT, i: value };
}

export function makeFloatAttribute(name: string, value: number): AttributeProto {
  return { name, type: AttrType.FLOAT, f: value };
}

// Opset imports.

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
  model.opsetImport = [...(model.opsetImport ?? []), onnx.OperatorSetIdProto.create({ domain, version })];
}
