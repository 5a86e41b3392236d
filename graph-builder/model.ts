/**
 * Wraps a finished GraphBuilder into a ModelProto and serializes it deterministically.
 *
 * Usage:
 *   const bytes = modelBytes(b);                  // Uint8Array, same graph => same bytes
 *   await writeModel(join(dir, 'decoder_step.onnx'), b);   // atomic write
 *   (reading a model back: decodeModel / loadModel in common/onnx/)
 *
 * Opsets: the default domain is imported at opset 17. 17 is the first opset with
 * LayerNormalization (the encoder needs it) and every op we use exists there in its final
 * form (Reduce* with axes as attribute or input changed at 13/18: we target 17's rules).
 * The consumers (transcribe-rs / Handy via the `ort` crate, onnxruntime >= 1.16, and
 * onnxruntime-node 1.30 here) all run opset 17, and the Python pipeline we replace exported
 * at 17 too, so its models and ours load in the same runtimes. `com.microsoft` 1 is imported
 * only when a graph actually uses a contrib op (e.g. after quantization: MatMulNBits).
 * IR version 8 is what opset 17 requires (ONNX 1.12) and the newest this onnx-proto knows.
 */
import { encodeModel, onnx, saveModel, type ModelProto } from '../common/onnx/index.js';
import type { GraphBuilder } from './graph-builder.js';

export const DEFAULT_OPSET = 17;
export const MS_DOMAIN = 'com.microsoft';
export const MS_OPSET = 1;
export const IR_VERSION = 8;
export const PRODUCER_NAME = 'qwen3-onnx';
export const PRODUCER_VERSION = '0.1.0';

export interface ModelOptions {
  docString?: string;
  /** Extra metadata_props (written sorted by key). */
  metadata?: Record<string, string>;
}

export function modelProto(b: GraphBuilder, opts: ModelOptions = {}): ModelProto {
  const graph = b.toGraphProto();
  const domains = b.usedDomains();
  const opsetImport = [onnx.OperatorSetIdProto.create({ domain: '', version: DEFAULT_OPSET })];
  for (const d of domains) {
    if (d === '') continue;
    if (d !== MS_DOMAIN) throw new Error(`graph ${b.graphName} uses unknown operator domain ${d}`);
    opsetImport.push(onnx.OperatorSetIdProto.create({ domain: MS_DOMAIN, version: MS_OPSET }));
  }
  const meta = opts.metadata ?? {};
  return onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport,
    producerName: PRODUCER_NAME,
    producerVersion: PRODUCER_VERSION,
    ...(opts.docString ? { docString: opts.docString } : {}),
    graph,
    metadataProps: Object.keys(meta).sort().map((key) => onnx.StringStringEntryProto.create({ key, value: meta[key] })),
  });
}

/** The .onnx bytes of a built graph (deterministic: common/onnx encodeModel). */
export function modelBytes(b: GraphBuilder, opts: ModelOptions = {}): Uint8Array {
  return encodeModel(modelProto(b, opts));
}

export async function writeModel(path: string, b: GraphBuilder, opts: ModelOptions = {}): Promise<void> {
  await saveModel(path, modelProto(b, opts));
}
