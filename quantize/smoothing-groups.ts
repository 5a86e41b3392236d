import {
  DataType, GraphIndex, dimsOf, readFloatAttribute, readIntAttribute, readIntsAttribute,
  type LoadedModel, type Node, type Tensor,
} from '../common/onnx/index.js';

/**
 * Finds, by graph structure alone, every RMSNorm whose output feeds only linear layers with
 * constant weights: the places AWQ smoothing can move scale between the norm weight and the
 * linears' input columns without changing the float function.
 *
 *   x ──RMSNorm core──▶ n ──Mul(γ)──▶ y ──┬─ MatMul(W [K,N])                      (q/k/v, gate/up)
 *                                          ├─ Reshape([..,K]) ─ Gemm(W [N,K], transB) (lm_head)
 *                                          └─ Shape (reads no values)
 *
 * The norm is either the decomposed form the exporter writes (Pow, ReduceMean, Add, Sqrt,
 * Div | Reciprocal·Mul, then Mul by the 1-D weight γ) or an already fused
 * (Skip)SimplifiedLayerNormalization. A norm whose output has any other reader (a residual
 * Add, a Transpose like the per-head q/k norms) is not a group: scaling its channels would
 * change that reader's result.
 *
 * Groups are keyed by the norm weight's initializer name (the checkpoint tensor name, e.g.
 * `thinker.model.layers.3.input_layernorm.weight`), which both decoder graphs share.
 */

export type WeightLayout = 'KN' | 'NK';

/** One linear layer reading the norm output. */
export interface GroupLinear {
  /** The MatMul / Gemm node. */
  node: Node;
  /** The node whose input slot names the weight initializer (the linear, or its Transpose). */
  weightRef: { node: Node; input: number };
  /** Initializer name of the weight. */
  weight: string;
  /** KN: [K, N] (x @ W); NK: [N, K] (x @ W^T). K = the norm's channel count. */
  layout: WeightLayout;
}

export interface SmoothingGroup {
  /** The norm weight initializer name. */
  key: string;
  /** The node applying the norm weight (Mul or (Skip)SimplifiedLayerNormalization). */
  normNode: Node;
  /** Input slot of `normNode` holding the norm weight. */
  normWeightInput: number;
  /** The value the linears read (the norm output). */
  output: string;
  channels: number;
  linears: GroupLinear[];
}

export interface SkippedNorm {
  key: string;
  reason: string;
}

export interface GroupSearch {
  groups: SmoothingGroup[];
  /** Norms with at least one linear reader that cannot be smoothed (and why). */
  skipped: SkippedNorm[];
}

export function findSmoothingGroups(loaded: LoadedModel): GroupSearch {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  const groups: SmoothingGroup[] = [];
  const skipped: SkippedNorm[] = [];
  for (const node of graph.node) {
    const norm = normApplication(idx, node);
    if (!norm) continue;
    const key = norm.weight;
    const readers = linearReaders(idx, norm.output, norm.channels);
    if (readers.linears.length === 0) continue; // q_norm / k_norm and friends: nothing to smooth into
    if (readers.blocker) { skipped.push({ key, reason: readers.blocker }); continue; }
    const weightUsers = idx.consumersOf(key);
    if (weightUsers.length !== 1 || weightUsers[0] !== node) {
      skipped.push({ key, reason: 'the norm weight is read by other nodes too' });
      continue;
    }
    groups.push({ key, normNode: node, normWeightInput: norm.weightInput, output: norm.output, channels: norm.channels, linears: readers.linears });
  }
  return { groups, skipped };
}

interface NormApplication { weight: string; weightInput: number; output: string; channels: number }

/** When `node` applies an RMSNorm's 1-D float weight, describes it. */
function normApplication(idx: GraphIndex, node: Node): NormApplication | null {
  const domain = node.domain;
  const op = node.opType;
  let weightInput: number;
  if ((op === 'SimplifiedLayerNormalization' && (domain === '' || domain === 'com.microsoft'))) weightInput = 1;
  else if (op === 'SkipSimplifiedLayerNormalization' && domain === 'com.microsoft') weightInput = 2;
  else if (op === 'Mul' && domain === '' && node.input.length === 2) {
    const [a, b] = node.input;
    if (isNormWeight(idx, b) && isRmsNormCore(idx, a)) weightInput = 1;
    else if (isNormWeight(idx, a) && isRmsNormCore(idx, b)) weightInput = 0;
    else return null;
  } else return null;
  const weight = node.input[weightInput] ?? '';
  const gamma = normWeight(idx, weight);
  const output = node.output[0];
  if (!gamma || !output) return null;
  return { weight, weightInput, output, channels: dimsOf(gamma)[0] };
}

function isNormWeight(idx: GraphIndex, name: string): boolean {
  return normWeight(idx, name) !== undefined;
}

/** The initializer `name` when it is a 1-D float32 weight of more than one channel. */
function normWeight(idx: GraphIndex, name: string): Tensor | undefined {
  const t = idx.initializers.get(name);
  return t && t.dataType === DataType.FLOAT && dimsOf(t).length === 1 && dimsOf(t)[0] > 1 ? t : undefined;
}

/**
 * True when `value` is x / sqrt(mean(x², last axis) + eps), written as Div(x, Sqrt(..)) or
 * Mul(x, Reciprocal(Sqrt(..))) / Mul(x, Div(1, Sqrt(..))).
 */
function isRmsNormCore(idx: GraphIndex, value: string): boolean {
  const p = idx.producer.get(value);
  if (!p || p.domain !== '' || p.input.length !== 2) return false;
  const [a, b] = p.input;
  if (p.opType === 'Div') return isRootMeanSquareOf(idx, b, a);
  if (p.opType === 'Mul') {
    for (const [x, inv] of [[a, b], [b, a]]) {
      const r = idx.producer.get(inv);
      if (!r || r.domain !== '') continue;
      if (r.opType === 'Reciprocal' && isRootMeanSquareOf(idx, r.input[0] ?? '', x)) return true;
      if (r.opType === 'Div' && idx.scalar(r.input[0] ?? '') === 1 && isRootMeanSquareOf(idx, r.input[1] ?? '', x)) return true;
    }
  }
  return false;
}

/** True when `value` is Sqrt(Add(ReduceMean(x², last axis, keepdims), eps)). */
function isRootMeanSquareOf(idx: GraphIndex, value: string, x: string): boolean {
  const sqrt = idx.producer.get(value);
  if (!sqrt || sqrt.opType !== 'Sqrt') return false;
  const add = idx.producer.get(sqrt.input[0] ?? '');
  if (!add || add.opType !== 'Add' || add.input.length !== 2) return false;
  const [a, b] = add.input;
  const reduceName = idx.scalar(b) !== null ? a : idx.scalar(a) !== null ? b : null;
  const reduce = reduceName ? idx.producer.get(reduceName) : undefined;
  if (!reduce || reduce.opType !== 'ReduceMean' || readIntAttribute(reduce, 'keepdims', 1) !== 1) return false;
  const axes = readIntsAttribute(reduce, 'axes') ?? (reduce.input[1] ? idx.constantValues(reduce.input[1]) : null);
  const rank = idx.rank(x);
  if (!axes || axes.length !== 1 || !(axes[0] === -1 || (rank !== undefined && axes[0] === rank - 1))) return false;
  const square = idx.producer.get(reduce.input[0] ?? '');
  if (!square) return false;
  if (square.opType === 'Pow') return square.input[0] === x && idx.scalar(square.input[1] ?? '') === 2;
  return square.opType === 'Mul' && square.input[0] === x && square.input[1] === x;
}

interface Readers { linears: GroupLinear[]; blocker?: string }

/**
 * Every linear reading `value` (directly or through channel-preserving reshapes), or why the
 * value has a reader whose result would change when its channels are rescaled.
 */
function linearReaders(idx: GraphIndex, value: string, channels: number): Readers {
  const linears: GroupLinear[] = [];
  let blocker: string | undefined;
  const visit = (v: string): void => {
    if (idx.graphOutputs.has(v)) blocker ??= `${v} is a graph output`;
    for (const c of idx.consumersOf(v)) {
      const op = c.opType;
      const domain = c.domain;
      if (domain === '' && op === 'Shape') continue; // reads the shape only
      if (domain === '' && (op === 'Identity' || (op === 'Reshape' && keepsLastAxis(idx, c, channels)))) {
        if (c.input[0] === v) { visit(c.output[0]); continue; }
      }
      const lin = asLinear(idx, c, v, channels);
      if (lin) { linears.push(lin); continue; }
      blocker ??= `read by ${op} node ${c.name || '(unnamed)'}`;
    }
  };
  visit(value);
  return blocker ? { linears, blocker } : { linears };
}

/** A Reshape to a constant shape whose last dimension is the channel count. */
function keepsLastAxis(idx: GraphIndex, node: Node, channels: number): boolean {
  const shape = idx.constantValues(node.input[1] ?? '');
  return Boolean(shape && shape.length >= 1 && shape[shape.length - 1] === channels);
}

/** `node` as a linear layer with `input` as its activation and a constant float weight. */
function asLinear(idx: GraphIndex, node: Node, input: string, channels: number): GroupLinear | null {
  if (node.domain !== '' || node.input[0] !== input || node.input[1] === input) return null;
  const wName = node.input[1] ?? '';
  const weight2d = (name: string): number[] | null => {
    const t = idx.initializers.get(name);
    if (!t || t.dataType !== DataType.FLOAT) return null;
    const d = dimsOf(t);
    return d.length === 2 ? d : null;
  };
  if (node.opType === 'MatMul') {
    const d = weight2d(wName);
    if (d) return d[0] === channels ? { node, weightRef: { node, input: 1 }, weight: wName, layout: 'KN' } : null;
    // x @ Transpose(W [N, K]) whose transposed value only feeds linears.
    const t = idx.producer.get(wName);
    if (!t || t.opType !== 'Transpose' || t.domain !== '') return null;
    const perm = readIntsAttribute(t, 'perm');
    if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return null;
    const src = t.input[0] ?? '';
    const ds = weight2d(src);
    if (!ds || ds[1] !== channels || idx.consumersOf(wName).length !== 1) return null;
    return { node, weightRef: { node: t, input: 0 }, weight: src, layout: 'NK' };
  }
  if (node.opType === 'Gemm') {
    if (readIntAttribute(node, 'transA', 0) !== 0 || readFloatAttribute(node, 'alpha', 1) !== 1) return null;
    const d = weight2d(wName);
    if (!d) return null;
    const transB = readIntAttribute(node, 'transB', 0) === 1;
    const K = transB ? d[1] : d[0];
    if (K !== channels) return null;
    return { node, weightRef: { node, input: 1 }, weight: wName, layout: transB ? 'NK' : 'KN' };
  }
  return null;
}
