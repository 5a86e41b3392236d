import type { GeneratedTensor } from './matmul-nbits.js';
import {
  DataType, GraphIndex, dimsOf, makeIntAttribute, readIntAttribute, uniqueName, usedNodeNames,
  type LoadedModel, type Node, type Tensor,
} from '../common/onnx/index.js';

/**
 * Packs sibling MatMulNBits nodes (same activation input, same K / bits / block_size /
 * accuracy_level, no bias) into one wider MatMulNBits whose outputs are split apart again:
 *
 *   x ──MatMulNBits(Wq)──▶ q                 x ──MatMulNBits(Wq|Wk|Wv)──Split(Nq, Nk, Nv; axis -1)──┬─▶ q
 *   x ──MatMulNBits(Wk)──▶ k       ─►                                                               ├─▶ k
 *   x ──MatMulNBits(Wv)──▶ v                                                                        └─▶ v
 *
 * In the Qwen3 decoder that is q|k|v (input_layernorm output) and gate|up
 * (post_attention_layernorm output). One wider kernel call reads the same weight bytes but pays
 * its fixed costs (thread hand-off, quantising the activation block-wise to int8 under
 * accuracy_level 4) once instead of two or three times; INVESTIGATION.md entry 18 measures it.
 *
 * MatMulNBits stores B [N, blocks, blob], scales [N, blocks] and zero points [N, zpCols] with N
 * outermost, and round-to-nearest quantises each output column on its own, so the packed
 * tensors are exactly the separate ones concatenated in order: the values are unchanged,
 * only their layout is. The packed initializers are declared here as concatenations of the
 * generated tensors they replace; the writer concatenates the bytes.
 */

export interface PackReport {
  /** One entry per packed node: its name and the nodes it replaced. */
  packed: { node: string; from: string[] }[];
}

/** One generated input of a member: its name, its initializer and how its bytes are made. */
interface Part { name: string; tensor: Tensor; gen: GeneratedTensor }
interface Member { node: Node; N: number; B: Part; scales: Part; zeroPoints?: Part }

export function packSiblingMatMulNBits(loaded: LoadedModel, generated: Map<string, GeneratedTensor>): PackReport {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  const groups = new Map<string, Member[]>();
  for (const node of graph.node) {
    const m = member(node, idx, generated);
    if (!m) continue;
    const key = [node.input[0], readIntAttribute(node, 'K', 0), readIntAttribute(node, 'bits', 0), readIntAttribute(node, 'block_size', 0),
      readIntAttribute(node, 'accuracy_level', 0), m.zeroPoints ? 'zp' : 'sym'].join('|');
    const list = groups.get(key);
    if (list) list.push(m); else groups.set(key, [m]);
  }

  const report: PackReport = { packed: [] };
  const nodeNames = usedNodeNames(graph.node);
  const valueNames = new Set<string>([...idx.initializers.keys(), ...idx.producer.keys()]);
  const newInits: Tensor[] = [];
  /** First member node -> the nodes that take its place; other members -> removed. */
  const replacement = new Map<Node, Node[]>();
  for (const members of groups.values()) {
    if (members.length < 2) continue;
    const first = members[0].node;
    const totalN = members.reduce((s, m) => s + m.N, 0);
    const declare = (part: 'B' | 'scales' | 'zeroPoints', parts: Part[]): string => {
      const name = uniqueName(valueNames, packName(parts.map((p) => p.name)));
      const first = parts[0].tensor;
      newInits.push({ name, dataType: first.dataType, dims: [totalN, ...dimsOf(first).slice(1)] });
      generated.set(name, { tasks: parts.flatMap((p) => p.gen.tasks), part });
      return name;
    };
    const B = declare('B', members.map((m) => m.B));
    const scales = declare('scales', members.map((m) => m.scales));
    const zeroPoints = members.flatMap((m) => (m.zeroPoints ? [m.zeroPoints] : []));
    const zp = zeroPoints.length === members.length ? declare('zeroPoints', zeroPoints) : undefined;
    const nodeName = uniqueName(nodeNames, packName(members.map((m) => m.node.name)));
    const packedOut = uniqueName(valueNames, `${nodeName}/output_0`);
    const splitSizes = uniqueName(valueNames, `${nodeName}/split_sizes`);
    newInits.push({
      name: splitSizes, dataType: DataType.INT64, dims: [members.length],
      rawData: new Uint8Array(new BigInt64Array(members.map((m) => BigInt(m.N))).buffer),
    });
    const matmul: Node = {
      name: nodeName, opType: 'MatMulNBits', domain: 'com.microsoft',
      input: [first.input[0], B, scales, ...(zp ? [zp] : [])],
      output: [packedOut],
      attribute: [makeIntAttribute('K', readIntAttribute(first, 'K', 0)), makeIntAttribute('N', totalN),
        ...first.attribute.filter((a) => a.name !== 'K' && a.name !== 'N')],
    };
    const split: Node = {
      name: uniqueName(nodeNames, `${nodeName}/Split`), opType: 'Split', domain: '',
      input: [packedOut, splitSizes], output: members.map((m) => m.node.output[0]), attribute: [makeIntAttribute('axis', -1)],
    };
    replacement.set(first, [matmul, split]);
    for (const m of members.slice(1)) replacement.set(m.node, []);
    report.packed.push({ node: nodeName, from: members.map((m) => m.node.name) });
  }
  if (replacement.size === 0) return report;
  // The packed node sits where the first member was: every member reads the same input, which
  // is produced before it, and every consumer of a member's output comes after that member.
  graph.node = graph.node.flatMap((n) => replacement.get(n) ?? [n]);
  graph.initializer = [...graph.initializer, ...newInits];
  return report;
}

/** A MatMulNBits this pass may pack: its B, scales and zero points are all generated here. */
function member(node: Node, idx: GraphIndex, generated: Map<string, GeneratedTensor>): Member | undefined {
  if (node.opType !== 'MatMulNBits' || node.domain !== 'com.microsoft') return undefined;
  const inputs = node.input;
  if (inputs.length < 3 || inputs.length > 4 || node.output.length !== 1) return undefined;
  const part = (name: string): Part | undefined => {
    const tensor = idx.initializers.get(name);
    const gen = generated.get(name);
    return tensor && gen ? { name, tensor, gen } : undefined;
  };
  const [, bName, scalesName, zpName] = inputs;
  const B = part(bName);
  const scales = part(scalesName);
  const zeroPoints = zpName ? part(zpName) : undefined;
  if (!B || !scales || (zpName && !zeroPoints)) return undefined;
  return { node, N: readIntAttribute(node, 'N', 0), B, scales, ...(zeroPoints ? { zeroPoints } : {}) };
}

/**
 * A readable name for a packed thing: the members' common prefix and suffix around their
 * differing middles, e.g. `...self_attn.q_proj.weight_Q4`, `...k_proj...`, `...v_proj...` ->
 * `...self_attn.q_proj+k_proj+v_proj.weight_Q4`.
 */
export function packName(names: string[]): string {
  let pre = 0;
  while (names.every((n) => n.length > pre && n[pre] === names[0][pre])) pre += 1;
  let suf = 0;
  while (names.every((n) => n.length - suf > pre && n[n.length - 1 - suf] === names[0][names[0].length - 1 - suf])) suf += 1;
  // Cut at separators so whole path segments are joined (q_proj+k_proj, not q+k_proj).
  const head = names[0].slice(0, pre);
  const cutPre = Math.max(head.lastIndexOf('.'), head.lastIndexOf('/')) + 1;
  const tail = names[0].slice(names[0].length - suf);
  const dot = tail.search(/[./]/);
  const cutSuf = dot < 0 ? 0 : tail.length - dot;
  const middles = names.map((n) => n.slice(cutPre, n.length - cutSuf));
  return `${names[0].slice(0, cutPre)}${middles.join('+')}${names[0].slice(names[0].length - cutSuf)}`;
}
