import { constantValues } from './tensor-data.js';
import {
  AttrType, DataType, dimsOf, readAttribute, toNumber,
  type Graph, type GraphProto, type Node, type NodeProto, type Tensor, type TensorProto,
} from './proto.js';

/**
 * A read-only index over one graph for pattern matching: who produces a value, who consumes it,
 * which values are constants, and (where it can be worked out) each value's element type.
 * Rebuild it after changing the graph.
 */
export class GraphIndex {
  readonly producer = new Map<string, Node>();
  readonly consumers = new Map<string, Node[]>();
  readonly initializers = new Map<string, Tensor>();
  readonly graphOutputs = new Set<string>();
  /** Element types known from inputs, value_info, initializers and simple propagation. */
  readonly elemType = new Map<string, number>();
  /** Static shapes (dims as numbers, -1 for symbolic) from graph inputs/outputs/value_info. */
  readonly shapes = new Map<string, number[]>();
  private readonly nodeOrder = new Map<Node, number>();

  constructor(readonly graph: Graph, readonly modelPath: string) {
    for (const t of graph.initializer) {
      if (!t.name) continue;
      this.initializers.set(t.name, t);
      this.elemType.set(t.name, t.dataType ?? 0);
      this.shapes.set(t.name, dimsOf(t));
    }
    for (const o of graph.output) if (o.name) this.graphOutputs.add(o.name);
    for (const v of [...graph.input, ...graph.valueInfo, ...graph.output]) {
      const tt = v.type?.tensorType;
      if (!v.name || !tt) continue;
      if (tt.elemType) this.elemType.set(v.name, tt.elemType);
      if (tt.shape) this.shapes.set(v.name, (tt.shape.dim ?? []).map((d) => (d.dimValue !== null && d.dimValue !== undefined && !d.dimParam ? toNumber(d.dimValue) : -1)));
    }
    graph.node.forEach((node, i) => {
      this.nodeOrder.set(node, i);
      for (const out of node.output) if (out) this.producer.set(out, node);
      for (const inp of node.input) {
        if (!inp) continue;
        const list = this.consumers.get(inp);
        if (list) { if (!list.includes(node)) list.push(node); } else this.consumers.set(inp, [node]);
      }
      // Values used inside subgraphs count as consumed by the node that owns the subgraph.
      for (const name of subgraphInputs(node)) {
        const list = this.consumers.get(name);
        if (list) { if (!list.includes(node)) list.push(node); } else this.consumers.set(name, [node]);
      }
      inferElemType(node, this.elemType);
    });
  }

  consumersOf(name: string): Node[] {
    return this.consumers.get(name) ?? [];
  }

  /** The only consumer of `name`, when it has exactly one and is not a graph output. */
  soleConsumer(name: string): Node | undefined {
    if (this.graphOutputs.has(name)) return undefined;
    const c = this.consumersOf(name);
    return c.length === 1 ? c[0] : undefined;
  }

  indexOf(node: Node): number {
    return this.nodeOrder.get(node) ?? -1;
  }

  /** A constant tensor: an initializer, or the value of a Constant node. */
  constantTensor(name: string): TensorProto | undefined {
    const init = this.initializers.get(name);
    if (init) return init;
    const p = this.producer.get(name);
    if (p && p.opType === 'Constant' && p.domain === '') {
      const value = readAttribute(p, 'value');
      if (value?.t) return value.t;
      const vf = readAttribute(p, 'value_float');
      if (vf) return { dataType: DataType.FLOAT, dims: [], floatData: [vf.f ?? 0] };
      const vi = readAttribute(p, 'value_int');
      if (vi) return { dataType: DataType.INT64, dims: [], int64Data: [vi.i ?? 0] };
      const vfs = readAttribute(p, 'value_floats');
      if (vfs) return { dataType: DataType.FLOAT, dims: [(vfs.floats ?? []).length], floatData: vfs.floats ?? [] };
      const vis = readAttribute(p, 'value_ints');
      if (vis) return { dataType: DataType.INT64, dims: [(vis.ints ?? []).length], int64Data: vis.ints ?? [] };
    }
    return undefined;
  }

  /** Small constant's values (<= 64 elements), or null when `name` is not such a constant. */
  constantValues(name: string): number[] | null {
    const t = this.constantTensor(name);
    return t ? constantValues(t, this.modelPath) : null;
  }

  /** The single value of a one-element constant, or null. */
  scalar(name: string): number | null {
    const v = this.constantValues(name);
    return v && v.length === 1 ? v[0] : null;
  }

  /** Rank of a value when known (value_info / inputs / initializers). */
  rank(name: string): number | undefined {
    return this.shapes.get(name)?.length;
  }
}

/** Names a node's subgraphs read from the enclosing scope (their free variables, roughly). */
export function subgraphInputs(node: NodeProto): string[] {
  const names: string[] = [];
  for (const a of node.attribute ?? []) {
    const graphs = a.type === AttrType.GRAPH && a.g ? [a.g] : a.type === AttrType.GRAPHS ? (a.graphs ?? []) : [];
    for (const g of graphs) collectGraphInputs(g, names);
  }
  return names;
}

function collectGraphInputs(g: GraphProto, names: string[]): void {
  for (const n of g.node ?? []) {
    for (const i of n.input ?? []) if (i) names.push(i);
    for (const name of subgraphInputs(n)) names.push(name);
  }
}

/** Ops whose output element type equals their first input's. */
const SAME_AS_FIRST_INPUT = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sqrt', 'Reciprocal', 'Neg', 'Abs', 'Exp', 'Log', 'Sin', 'Cos',
  'Tanh', 'Sigmoid', 'Erf', 'Relu', 'Softmax', 'LogSoftmax', 'ReduceMean', 'ReduceSum', 'ReduceMax',
  'ReduceMin', 'MatMul', 'Gemm', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Concat', 'Slice',
  'Split', 'Expand', 'Identity', 'Tile', 'Pad', 'Max', 'Min', 'Clip', 'Trilu', 'ScatterND',
  'ScatterElements', 'CumSum', 'Gather', 'GatherElements', 'GatherND', 'LayerNormalization',
  'SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization', 'MatMulNBits', 'Gelu',
  'FastGelu', 'Softplus', 'Range', 'Flatten', 'Mod', 'Floor', 'Ceil', 'Round',
]);
const INT64_OUTPUT = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero']);
const BOOL_OUTPUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Not', 'Xor', 'IsNaN', 'IsInf']);

function inferElemType(node: Node, types: Map<string, number>): void {
  const out = node.output?.[0];
  if (!out || types.has(out)) return;
  const op = node.opType ?? '';
  let t: number | undefined;
  if (op === 'Cast') t = toNumber(readAttribute(node, 'to')?.i);
  else if (op === 'Constant') {
    const a = (node.attribute ?? [])[0];
    if (a?.t) t = a.t.dataType ?? undefined;
    else if (a?.name === 'value_float' || a?.name === 'value_floats') t = DataType.FLOAT;
    else if (a?.name === 'value_int' || a?.name === 'value_ints') t = DataType.INT64;
  } else if (op === 'ConstantOfShape') t = readAttribute(node, 'value')?.t?.dataType ?? DataType.FLOAT;
  else if (INT64_OUTPUT.has(op)) t = DataType.INT64;
  else if (BOOL_OUTPUT.has(op)) t = DataType.BOOL;
  else if (op === 'Where') t = types.get(node.input?.[1] ?? '');
  else if (SAME_AS_FIRST_INPUT.has(op)) t = types.get(node.input?.[0] ?? '');
  if (t) types.set(out, t);
}

/** The names the nodes of a graph already use. */
export function usedNodeNames(nodes: readonly NodeProto[]): Set<string> {
  const s = new Set<string>();
  for (const n of nodes) if (n.name) s.add(n.name);
  return s;
}

/** `base`, or `base_1`, `base_2`... : the first not in `used` (which it joins). */
export function uniqueName(used: Set<string>, base: string): string {
  let name = base;
  for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
  used.add(name);
  return name;
}
