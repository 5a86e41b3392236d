import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { AttrType, DataType, onnx as OnnxProto, encodeModel, type AttributeProto, type ModelProto, type NodeProto, type TensorProto } from '../common/onnx/index.js';

/**
 * Small hand-built ONNX graphs for tests: built with onnx-proto directly, saved with their
 * large initializers in an external data file (the way an export writes them), run in ORT.
 * Not production code: everything is held in memory.
 */

export interface ValueSpec { name: string; elemType?: number; dims: (number | string)[] }

export interface GraphSpec {
  nodes: NodeProto[];
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  initializers: { name: string; dims: number[]; data: Float32Array | BigInt64Array; dataType?: number }[];
  opset?: number;
  valueInfo?: ValueSpec[];
}

export function node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, number | number[] | TensorProto> = {}, domain = '', name = ''): NodeProto {
  const attribute: AttributeProto[] = Object.entries(attrs).map(([k, v]) => {
    if (Array.isArray(v)) return { name: k, type: AttrType.INTS, ints: v };
    if (typeof v === 'number') return Number.isInteger(v) && !FLOAT_ATTRS.has(k) ? { name: k, type: AttrType.INT, i: v } : { name: k, type: AttrType.FLOAT, f: v };
    return { name: k, type: AttrType.TENSOR, t: v };
  });
  return { opType, input: inputs, output: outputs, attribute, domain, name: name || `${opType}_${outputs[0]}` };
}
const FLOAT_ATTRS = new Set(['epsilon', 'alpha', 'beta', 'value_float']);

function valueInfo(v: ValueSpec) {
  return {
    name: v.name,
    type: { tensorType: { elemType: v.elemType ?? DataType.FLOAT, shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

export function buildModel(spec: GraphSpec): ModelProto {
  const initializer: TensorProto[] = spec.initializers.map((i) => ({
    name: i.name,
    dataType: i.dataType ?? (i.data instanceof BigInt64Array ? DataType.INT64 : DataType.FLOAT),
    dims: i.dims,
    rawData: new Uint8Array(i.data.buffer, i.data.byteOffset, i.data.byteLength),
  }));
  return OnnxProto.ModelProto.create({
    irVersion: 8,
    producerName: 'qwen3-onnx-test',
    opsetImport: [{ domain: '', version: spec.opset ?? 17 }],
    graph: {
      name: 'g',
      node: spec.nodes,
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      initializer,
      valueInfo: (spec.valueInfo ?? []).map(valueInfo),
    },
  });
}

/**
 * Writes `model` as `dir/name` with every initializer of at least `externalFrom` bytes moved to
 * `dir/dataName` (4-byte aligned, file order), like an exporter does. Returns the model path.
 */
export async function saveWithExternalData(model: ModelProto, dir: string, name: string, dataName: string, externalFrom = 64): Promise<string> {
  const copy = OnnxProto.ModelProto.decode(encodeModel(model));
  const chunks: Uint8Array[] = [];
  let pos = 0;
  for (const t of copy.graph?.initializer ?? []) {
    const raw = t.rawData;
    if (!raw || raw.byteLength < externalFrom) continue;
    const pad = (4 - (pos % 4)) % 4;
    if (pad) { chunks.push(new Uint8Array(pad)); pos += pad; }
    chunks.push(raw);
    t.dataLocation = 1;
    t.externalData = [{ key: 'location', value: dataName }, { key: 'offset', value: String(pos) }, { key: 'length', value: String(raw.byteLength) }];
    delete t.rawData;
    pos += raw.byteLength;
  }
  await writeFile(join(dir, dataName), Buffer.concat(chunks));
  const path = join(dir, name);
  await writeFile(path, encodeModel(copy));
  return path;
}

const created: string[] = [];

/** A fresh temp dir, removed by `removeTempDirs()` (call it from afterAll). */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `qwen3-onnx-${prefix}-`));
  created.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(created.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export function randomFloats(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Prng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

/** Runs a model file in ORT (CPU) and returns float outputs by name. */
export async function runOrt(
  modelPath: string, feeds: Record<string, ort.Tensor>, opts: ort.InferenceSession.SessionOptions = {},
): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, ...opts });
  try {
    const out = await session.run(feeds);
    const res: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
    for (const [k, v] of Object.entries(out)) res[k] = { data: v.data as Float32Array, dims: v.dims };
    return res;
  } finally {
    await session.release();
  }
}

export function f32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

/** Largest |a-b| / max(|b|, floor) over the arrays. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
