import { dirname } from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { DataType, decodeModel, encodeModel, onnx, type LoadedModel } from '../common/onnx/index.js';
import { findSmoothingGroups, type SmoothingGroup } from '../quantize/smoothing-groups.js';

/**
 * An onnxruntime session of a float graph with every smoothable norm output added as an extra
 * graph output ("tap"), without writing anything next to the model: the tapped copy lives only
 * in memory and is handed to onnxruntime as bytes, with its external data resolved against the
 * model's own directory (session option `session.model_external_initializers_file_folder_path`).
 *
 * Why in memory: onnxruntime 1.30 refuses external data given by an absolute path, and
 * refuses a symlink in a temp dir that resolves outside that dir, so a tapped copy elsewhere
 * could not point at the original decoder_weights.data.
 */

export interface Tap {
  /** Norm weight name (the statistics key). */
  key: string;
  /** Graph value holding the norm output. */
  value: string;
  channels: number;
  /** Weight names of the linears reading it. */
  linears: string[];
}

export interface TappedSession {
  session: ort.InferenceSession;
  taps: Tap[];
}

export function tapsOf(groups: SmoothingGroup[]): Tap[] {
  return groups.map((g) => ({ key: g.key, value: g.output, channels: g.channels, linears: g.linears.map((l) => l.weight) }));
}

/** The model's bytes with `values` appended to its graph outputs (float32, shape left to inference). */
export function tappedModelBytes(loaded: LoadedModel, values: string[]): Uint8Array {
  const copy = decodeModel(encodeModel(loaded.model), loaded.path);
  const outputs = [...loaded.graph.output];
  const existing = new Set(outputs.map((o) => o.name));
  for (const v of values) {
    if (existing.has(v)) continue;
    outputs.push(onnx.ValueInfoProto.create({
      name: v,
      type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: DataType.FLOAT }) }),
    }));
  }
  copy.graph = { ...copy.graph, output: outputs };
  return encodeModel(copy);
}

export async function openTappedSession(loaded: LoadedModel, opts: { threads?: number } = {}): Promise<TappedSession> {
  const { groups, skipped } = findSmoothingGroups(loaded);
  if (groups.length === 0) {
    const why = skipped.length ? ` (${skipped.map((s) => `${s.key}: ${s.reason}`).join('; ')})` : '';
    throw new UserError(`${loaded.path}: found no RMSNorm feeding quantisable linear layers${why}`);
  }
  const taps = tapsOf(groups);
  const bytes = tappedModelBytes(loaded, taps.map((t) => t.value));
  try {
    const session = await ort.InferenceSession.create(bytes, {
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
      extra: { session: { model_external_initializers_file_folder_path: dirname(loaded.path) } },
    });
    return { session, taps };
  } catch (err) {
    throw new UserError(`${loaded.path}: onnxruntime cannot load it (${String((err as Error)?.message ?? err).split('\n')[0]})`);
  }
}
