import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import { UserError, fsError } from '../errors.js';
import { checkTensorRanges } from './tensor-data.js';
import { onnx, type Graph, type GraphProto, type ModelProto } from './proto.js';

/**
 * Loading and saving .onnx files whose weights live in external data files, without reading
 * those files: initializers keep pointing at their (file, offset, length) ranges, resolved
 * relative to the model file (tensor-data.ts).
 */

export interface LoadedModel {
  /** Absolute path of the .onnx file. */
  path: string;
  model: ModelProto;
  /** `model.graph`, with the fields a decoded graph always has (proto.ts `Graph`). */
  graph: Graph;
}

/** Parses model bytes (a UserError naming `source` when they are no ONNX model or have no graph). */
export function decodeModel(bytes: Uint8Array, source = 'model'): ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new UserError(`${source}: not an ONNX model (${(err as Error).message})`);
  }
}

/** Protobuf bytes; protobufjs writes fields in field-number order, so output is deterministic. */
export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

export async function loadModel(path: string): Promise<LoadedModel> {
  const abs = resolve(path);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(abs);
  } catch (err) {
    throw fsError('cannot read', abs, err);
  }
  const model = decodeModel(bytes, abs);
  if (!model.graph) throw new UserError(`${abs}: ONNX model has no graph`);
  return { path: abs, model, graph: decodedGraph(model.graph, abs) };
}

/**
 * The graph as `Graph`. protobufjs's decoder builds every message with its repeated fields as
 * arrays and its scalars defaulted on the prototype, so this only checks, never fills in
 * (an own field would be written back out and change the bytes).
 */
function decodedGraph(g: GraphProto, path: string): Graph {
  const arrays = [g.node, g.initializer, g.input, g.output, g.valueInfo];
  const nodesOk = (g.node ?? []).every((n) => Array.isArray(n.input) && Array.isArray(n.output) && Array.isArray(n.attribute)
    && typeof n.opType === 'string' && typeof n.domain === 'string' && typeof n.name === 'string');
  const tensorsOk = (g.initializer ?? []).every((t) => Array.isArray(t.dims) && typeof t.name === 'string' && typeof t.dataType === 'number');
  if (!arrays.every(Array.isArray) || !nodesOk || !tensorsOk) throw new Error(`${path}: decoded graph lacks default fields (onnx-proto changed?)`);
  return g as Graph;
}

/** Checks that every external range of a loaded model lies inside its file. */
export async function checkExternalRanges(loaded: LoadedModel): Promise<void> {
  await checkTensorRanges(loaded.graph.initializer, loaded.path);
}

/** Writes a model atomically. */
export async function saveModel(path: string, model: ModelProto): Promise<void> {
  await writeFileAtomic(path, encodeModel(model));
}
