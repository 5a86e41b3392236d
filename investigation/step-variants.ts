/**
 * Prototype rewrites of an exported decoder_step graph (float or int4), for the decode-speed
 * experiments of INVESTIGATION.md. They keep the consumer contract (same inputs, outputs, names,
 * shapes, stacked [L,B,KV,T,D] caches) and only change how attention and the caches are computed,
 * so the result can be A/B-timed against the original and checked for identical outputs.
 *
 * They read the node names graph-builder writes (`/model/layers.N/attn/...`): a prototype, not a
 * general-purpose pass. What proves out belongs in graph-builder (see the report).
 *
 * - `kv-direct`: no per-layer KV Concat, no repeat_kv Expand, one Concat per cache at the end.
 *   The two query heads of a KV group become the two rows of one MatMul against the shared
 *   cached keys; scores over the past and over the new token are computed apart and joined
 *   (tiny [B,KV,G,P+1] tensor), and the output is P·V_past + p_new·v_new:
 *
 *     q [B,H,1,D] ──Reshape[0,KV,G,D]──▶ qg
 *     qg ──MatMul(past_k^T)──┐                                        ┌─Slice(:-1)──MatMul(past_v)──┐
 *     qg ──MatMul(k_new^T)───Concat(-1)──Mul(1/√D)──Softmax(-1)──┤                               Add──Reshape[0,1,H*D]──▶ o_proj
 *                                                                   └─Slice(-1:)──MatMul(v_new)───┘
 *     present_keys = Concat(past_keys, Concat_l(Unsqueeze(k_new_l, 0)), axis 3)   (same for values)
 *
 * - `gqa`: com.microsoft.GroupQueryAttention per layer (RoPE stays outside, do_rotary 0), its
 *   present_key/value stacked into the outputs as before.
 * - `rotary`: com.microsoft.RotaryEmbedding for q and k (replaces Split/Neg/Concat/Mul/Mul/Add),
 *   fed a per-token cos/sin cache built from the graph's own frequencies; apply after kv-direct
 *   or alone.
 */
import { writeFile } from 'node:fs/promises';
import {
  AttrType, DataType, OnnxProto, encodeModel, ensureOpset, floatAttr, intAttr, loadModel,
  type AttributeProto, type GraphProto, type NodeProto,
} from '../common/onnx-model.js';

export type StepRewrite = 'kv-direct' | 'gqa' | 'rotary';

export interface StepDims { layers: number; heads: number; kvHeads: number; headDim: number }

const INT64_MAX = 9223372036854775807n;

/** Fresh-name counter, shared by every Editor of one rewriteStep call (names must be unique). */
let counter = 0;

class Editor {
  readonly added: NodeProto[] = [];
  constructor(readonly graph: GraphProto) {}

  fresh(hint: string): string { return `/investigation/${hint}_${counter++}`; }

  int64(values: ReadonlyArray<number | bigint>, dims: number[] = [values.length]): string {
    const name = this.fresh('i64');
    const raw = new BigInt64Array(values.map((v) => BigInt(v)));
    this.graph.initializer!.push(OnnxProto.TensorProto.create({ name, dataType: DataType.INT64, dims, rawData: new Uint8Array(raw.buffer) }));
    return name;
  }

  int32(values: number[], dims: number[] = [values.length]): string {
    const name = this.fresh('i32');
    this.graph.initializer!.push(OnnxProto.TensorProto.create({ name, dataType: DataType.INT32, dims, rawData: new Uint8Array(new Int32Array(values).buffer) }));
    return name;
  }

  float(value: number): string {
    const name = this.fresh('f32');
    this.graph.initializer!.push(OnnxProto.TensorProto.create({ name, dataType: DataType.FLOAT, dims: [], rawData: new Uint8Array(new Float32Array([value]).buffer) }));
    return name;
  }

  /** Queues a node; returns its first output (or `outputs` when given). */
  op(opType: string, inputs: string[], opts: { attrs?: AttributeProto[]; outputs?: string[]; domain?: string; nOut?: number } = {}): string[] {
    const outputs = opts.outputs ?? Array.from({ length: opts.nOut ?? 1 }, () => this.fresh(opType));
    this.added.push(OnnxProto.NodeProto.create({ opType, input: inputs, output: outputs, name: this.fresh(`${opType}_node`), attribute: opts.attrs ?? [], domain: opts.domain ?? '' }));
    return outputs;
  }
}

const ints = (name: string, values: number[]): AttributeProto => ({ name, type: AttrType.INTS, ints: values });

function nodeNamed(graph: GraphProto, name: string): NodeProto {
  const n = graph.node!.find((x) => x.name === name);
  if (!n) throw new Error(`decoder_step has no node ${name} (not a graph-builder export?)`);
  return n;
}

/**
 * Replaces the nodes `removeNames` (all consumed by the rewrite) with the editor's nodes, placed
 * where the first removed node was so the graph stays topologically sorted.
 */
function splice(graph: GraphProto, remove: Set<string>, ed: Editor, anchor: string): void {
  const nodes = graph.node!;
  const at = nodes.findIndex((n) => n.name === anchor);
  if (at < 0) throw new Error(`no anchor node ${anchor}`);
  const before = nodes.slice(0, at).filter((n) => !remove.has(n.name ?? ''));
  const after = nodes.slice(at).filter((n) => !remove.has(n.name ?? ''));
  graph.node = [...before, ...ed.added, ...after];
  ed.added.length = 0;
}

function attentionNodes(graph: GraphProto, l: number): Set<string> {
  const p = `/model/layers.${l}/attn`;
  return new Set(graph.node!.map((n) => n.name ?? '').filter((n) =>
    n.startsWith(`${p}/kv_cache/`) || n.startsWith(`${p}/k_repeat/`) || n.startsWith(`${p}/v_repeat/`) || n.startsWith(`${p}/sdpa/`)));
}

/** Per-layer tensor names the rewrites read. */
function layerTensors(graph: GraphProto, l: number): { q: string; kNew: string; vNew: string; pastK: string; pastV: string; attnOut: string } {
  const p = `/model/layers.${l}/attn`;
  const ck = nodeNamed(graph, `${p}/kv_cache/ConcatKey`);
  const cv = nodeNamed(graph, `${p}/kv_cache/ConcatValue`);
  return {
    q: nodeNamed(graph, `${p}/sdpa/MatMul`).input![0],
    pastK: ck.input![0], kNew: ck.input![1],
    pastV: cv.input![0], vNew: cv.input![1],
    attnOut: nodeNamed(graph, `${p}/sdpa/Reshape`).output![0],
  };
}

function removePresentStacks(graph: GraphProto): void {
  graph.node = graph.node!.filter((n) => !(n.name ?? '').startsWith('/model/present_keys/') && !(n.name ?? '').startsWith('/model/present_values/'));
}

function kvDirect(graph: GraphProto, d: StepDims): void {
  const groups = d.heads / d.kvHeads;
  const newKeys: string[] = [];
  const newValues: string[] = [];
  for (let l = 0; l < d.layers; l++) {
    const ed = new Editor(graph);
    const t = layerTensors(graph, l);
    const remove = attentionNodes(graph, l);
    const anchor = `/model/layers.${l}/attn/kv_cache/ConcatKey`;
    const [qg] = ed.op('Reshape', [t.q, ed.int64([0, d.kvHeads, groups, d.headDim])]);
    const [kPastT] = ed.op('Transpose', [t.pastK], { attrs: [ints('perm', [0, 1, 3, 2])] });
    const [kNewT] = ed.op('Transpose', [t.kNew], { attrs: [ints('perm', [0, 1, 3, 2])] });
    const [sPast] = ed.op('MatMul', [qg, kPastT]);
    const [sNew] = ed.op('MatMul', [qg, kNewT]);
    const [s] = ed.op('Concat', [sPast, sNew], { attrs: [intAttr('axis', -1)] });
    const [scaled] = ed.op('Mul', [s, ed.float(1 / Math.sqrt(d.headDim))]);
    const [probs] = ed.op('Softmax', [scaled], { attrs: [intAttr('axis', -1)] });
    const axis = ed.int64([-1]);
    const [pPast] = ed.op('Slice', [probs, ed.int64([0]), ed.int64([-1]), axis]);
    const [pNew] = ed.op('Slice', [probs, ed.int64([-1]), ed.int64([INT64_MAX]), axis]);
    const [oPast] = ed.op('MatMul', [pPast, t.pastV]);
    const [oNew] = ed.op('MatMul', [pNew, t.vNew]);
    const [o] = ed.op('Add', [oPast, oNew]);
    ed.op('Reshape', [o, ed.int64([0, 1, d.heads * d.headDim])], { outputs: [t.attnOut] });
    splice(graph, remove, ed, anchor);
    newKeys.push(t.kNew);
    newValues.push(t.vNew);
  }
  removePresentStacks(graph);
  const ed = new Editor(graph);
  const axis0 = ed.int64([0]);
  for (const [past, news, out] of [['past_keys', newKeys, 'present_keys'], ['past_values', newValues, 'present_values']] as const) {
    const [stacked] = ed.op('Concat', news.map((k) => ed.op('Unsqueeze', [k, axis0])[0]), { attrs: [intAttr('axis', 0)] });
    ed.op('Concat', [past, stacked], { attrs: [intAttr('axis', 3)], outputs: [out] });
  }
  graph.node = [...graph.node!, ...ed.added];
}

function gqa(graph: GraphProto, d: StepDims): void {
  const presentK: string[] = [];
  const presentV: string[] = [];
  const shared = new Editor(graph);
  const [pastLen] = shared.op('Shape', ['past_keys'], { attrs: [intAttr('start', 3), intAttr('end', 4)] });
  const [seqlensK] = shared.op('Cast', [pastLen], { attrs: [intAttr('to', DataType.INT32)] });
  const [totalVec] = shared.op('Add', [seqlensK, shared.int32([1])]);
  const [total] = shared.op('Squeeze', [totalVec, shared.int64([0])]);
  graph.node = [...shared.added, ...graph.node!];
  for (let l = 0; l < d.layers; l++) {
    const ed = new Editor(graph);
    const t = layerTensors(graph, l);
    const remove = attentionNodes(graph, l);
    const [q3] = ed.op('Reshape', [t.q, ed.int64([0, 1, d.heads * d.headDim])]);
    const [k3] = ed.op('Reshape', [t.kNew, ed.int64([0, 1, d.kvHeads * d.headDim])]);
    const [v3] = ed.op('Reshape', [t.vNew, ed.int64([0, 1, d.kvHeads * d.headDim])]);
    const outs = [t.attnOut, ed.fresh('present_key'), ed.fresh('present_value')];
    ed.op('GroupQueryAttention', [q3, k3, v3, t.pastK, t.pastV, seqlensK, total], {
      domain: 'com.microsoft', outputs: outs,
      attrs: [intAttr('num_heads', d.heads), intAttr('kv_num_heads', d.kvHeads), floatAttr('scale', 1 / Math.sqrt(d.headDim))],
    });
    splice(graph, remove, ed, `/model/layers.${l}/attn/kv_cache/ConcatKey`);
    presentK.push(outs[1]);
    presentV.push(outs[2]);
  }
  removePresentStacks(graph);
  const ed = new Editor(graph);
  const axis0 = ed.int64([0]);
  for (const [parts, out] of [[presentK, 'present_keys'], [presentV, 'present_values']] as const) {
    ed.op('Concat', parts.map((k) => ed.op('Unsqueeze', [k, axis0])[0]), { attrs: [intAttr('axis', 0)], outputs: [out] });
  }
  graph.node = [...graph.node!, ...ed.added];
}

function rotary(graph: GraphProto, d: StepDims): void {
  // Shared: one cos/sin row per token (row b*S+s), read with positions 0..B*S-1.
  const ed = new Editor(graph);
  const freqs = nodeNamed(graph, '/model/rotary_emb/Mul').output![0]; // [B,S,D/2]
  const half = ed.int64([-1, d.headDim / 2]);
  const [cosCache] = ed.op('Reshape', [ed.op('Cos', [freqs])[0], half]);
  const [sinCache] = ed.op('Reshape', [ed.op('Sin', [freqs])[0], half]);
  const [count] = ed.op('Size', ['position_ids']);
  const [range] = ed.op('Range', [ed.int64([0], []), count, ed.int64([1], [])]);
  const [rows] = ed.op('Reshape', [range, ed.op('Shape', ['position_ids'])[0]]);
  const anchor = '/model/layers.0/attn/q_rotary/Split';
  splice(graph, new Set(), ed, anchor);
  for (let l = 0; l < d.layers; l++) {
    for (const which of ['q', 'k'] as const) {
      const p = `/model/layers.${l}/attn/${which}_rotary`;
      const split = nodeNamed(graph, `${p}/Split`);
      const add = nodeNamed(graph, `${p}/Add`);
      const remove = new Set(graph.node!.map((n) => n.name ?? '').filter((n) => n.startsWith(`${p}/`)));
      const e = new Editor(graph);
      e.op('RotaryEmbedding', [split.input![0], rows, cosCache, sinCache], { domain: 'com.microsoft', outputs: [add.output![0]] });
      splice(graph, remove, e, `${p}/Split`);
    }
  }
}

/** Applies `rewrites` in order to `src` and writes the result to `dst` (same directory: external data paths stay valid). */
export async function rewriteStep(src: string, dst: string, dims: StepDims, rewrites: StepRewrite[]): Promise<void> {
  counter = 0;
  const loaded = await loadModel(src);
  const graph = loaded.model.graph!;
  for (const r of rewrites) {
    if (r === 'kv-direct') kvDirect(graph, dims);
    else if (r === 'gqa') gqa(graph, dims);
    else rotary(graph, dims);
  }
  if (rewrites.some((r) => r === 'gqa' || r === 'rotary')) ensureOpset(loaded.model, 'com.microsoft', 1);
  const used = new Set(graph.node!.flatMap((n) => n.input ?? []));
  graph.initializer = graph.initializer!.filter((t) => used.has(t.name ?? ''));
  await writeFile(dst, encodeModel(loaded.model));
}
