import {
  DataType, GraphIndex, dimsOf, makeIntAttribute, readTensorBytesSync, uniqueName, usedNodeNames,
  type LoadedModel, type Node,
} from '../common/onnx/index.js';

/**
 * Stores a Conv's float32 weight as bfloat16 where that is exact (the low 16 bits of every value
 * are zero: weights that came from a BF16 checkpoint, as Qwen3-ASR's do), with a Cast in front of
 * the Conv that widens it back:
 *
 *   W float32 ──▶ Conv    ─►    W_bf16 bfloat16 ──Cast(to float)──▶ W ──▶ Conv
 *
 * Lossless: the Conv sees the very float32 values it saw before, from half the bytes (the encoder's
 * two 480-channel 3x3 convs: 16.6 -> 8.3 MB). The Cast is an ordinary node, so the graph is right at
 * every optimisation level; onnxruntime folds it into a constant from level `basic` up.
 * Only weights of at least `minBytes` are converted (a Cast per tiny tensor buys nothing).
 */

export interface Bf16ConvReport {
  /** The converted weights: original name and the bfloat16 initializer that replaced it. */
  converted: { weight: string; stored: string; bytes: number }[];
}

/** The bfloat16 bytes of a float32 tensor when exact, else null. */
export function exactBf16(f32: Uint8Array): Uint8Array | null {
  if (f32.byteLength % 4 !== 0) return null;
  const out = new Uint8Array(f32.byteLength / 2);
  for (let i = 0, j = 0; i < f32.byteLength; i += 4, j += 2) {
    if (f32[i] !== 0 || f32[i + 1] !== 0) return null;
    out[j] = f32[i + 2];
    out[j + 1] = f32[i + 3];
  }
  return out;
}

/**
 * Rewrites the graph in place; returns, per new initializer name, the bytes the writer must store
 * (transform.ts puts them in the external-data file like any other weight).
 */
export function storeConvWeightsAsBf16(loaded: LoadedModel, minBytes = 1 << 20): { report: Bf16ConvReport; bytes: Map<string, Uint8Array> } {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  const nodeNames = usedNodeNames(graph.node);
  const valueNames = new Set<string>([...idx.initializers.keys(), ...idx.producer.keys()]);
  for (const i of graph.input) if (i.name) valueNames.add(i.name);
  const report: Bf16ConvReport = { converted: [] };
  const bytes = new Map<string, Uint8Array>();
  const casts: Node[] = [];
  const done = new Set<string>();
  for (const node of graph.node) {
    if (node.opType !== 'Conv' || node.domain !== '') continue;
    const name = node.input[1];
    const w = idx.initializers.get(name);
    if (!w || done.has(name) || w.dataType !== DataType.FLOAT) continue;
    const f32 = readTensorBytesSync(w, loaded.path);
    if (f32.byteLength < minBytes) continue;
    const half = exactBf16(f32);
    if (!half) continue;
    done.add(name);
    const stored = uniqueName(valueNames, `${name}_bf16`);
    // The float32 initializer becomes the Cast's output: every reader of `name` is unchanged.
    graph.initializer = graph.initializer.filter((t) => t.name !== name);
    graph.initializer.push({ name: stored, dataType: DataType.BFLOAT16, dims: dimsOf(w) });
    bytes.set(stored, half);
    casts.push({
      name: uniqueName(nodeNames, `${name}/CastFromBf16`), opType: 'Cast', domain: '',
      input: [stored], output: [name], attribute: [makeIntAttribute('to', DataType.FLOAT)],
    });
    report.converted.push({ weight: name, stored, bytes: half.byteLength });
  }
  // Casts of initializers depend on nothing: first in the graph keeps the order topological.
  if (casts.length) graph.node = [...casts, ...graph.node];
  return { report, bytes };
}
