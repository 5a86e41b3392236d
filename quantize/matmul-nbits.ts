import {
  DataType, GraphIndex, dimsOf, ensureOpset, makeIntAttribute, readFloatAttribute, readIntAttribute, readIntsAttribute,
  sourceId as tensorSourceId, tensorBytes, uniqueName, usedNodeNames,
  type LoadedModel, type Node, type Tensor, type TensorBytes,
} from '../common/onnx/index.js';
import { rtnShape, type RtnParams, type WeightLayout } from './rtn.js';

/**
 * Rewrites every MatMul / Gemm with a constant float32 weight into com.microsoft MatMulNBits:
 *
 *   MatMul(A, W[K,N])                      ─► MatMulNBits(A, W_Q4, W_scales, W_zero_points)
 *   MatMul(A, Transpose(W[N,K], perm 1,0))  ─► MatMulNBits(A, W_Q4, W_scales, W_zero_points)
 *   Gemm(A, W[N,K], C?, transB=1)           ─► MatMulNBits(A, W_Q4, W_scales, W_zero_points, '', C)
 *   Gemm(A, W[K,N], C?, transB=0)           ─► same
 *
 * (attributes K, N, bits, block_size, accuracy_level when > 0). The quantised tensors are only
 * declared here (`GeneratedTensor`); their bytes are computed later, once per distinct source
 * weight, and written by the caller. The float weight stays only while something else (the
 * embedding Gather of a tied lm_head) still reads it.
 */

export interface NBitsOptions extends RtnParams {
  accuracyLevel: number;
  /** Glob patterns (`*`, `?`) on node names and weight names to leave in float. */
  exclude: readonly string[];
}

/**
 * The options of one MatMul/Gemm chosen by a recipe (quantize/recipe.ts): its rounding
 * parameters and accuracy level, or null to leave it in float.
 */
export type NBitsChoice = (RtnParams & { accuracyLevel: number }) | null;
/** Chooses per weight (by its checkpoint name) and node; without one every candidate takes the pass's options. */
export type NBitsSelector = (c: { node: string; weight: string; K: number; N: number }) => NBitsChoice;

/** One distinct source weight to quantise (shared by every graph/node that uses it). */
export interface WeightTask {
  key: string;
  /** How it is rounded (one weight rounded two ways is two tasks). */
  params: RtnParams;
  /** Where the float32 weight bytes are. */
  source: TensorBytes;
  layout: WeightLayout;
  K: number;
  N: number;
  /** The source initializer's name (for messages). */
  weightName: string;
}

export type TensorPart = 'B' | 'scales' | 'zeroPoints';

/**
 * An initializer whose bytes come from quantising `tasks`: one weight, or several packed along
 * N (pack-projections.ts), whose parts are then concatenated in order.
 */
export interface GeneratedTensor {
  tasks: WeightTask[];
  part: TensorPart;
}

export interface NBitsReport {
  quantized: { node: string; weight: string; K: number; N: number }[];
  skipped: { node: string; weight: string; reason: string }[];
  /** How many nodes each exclude pattern matched. */
  excludeHits: number[];
}

/** Tasks shared across the graphs of one run, so a weight used twice is quantised once. */
export class TaskRegistry {
  private readonly tasks = new Map<string, WeightTask>();
  get(key: string, make: () => WeightTask): WeightTask {
    let t = this.tasks.get(key);
    if (!t) { t = make(); this.tasks.set(key, t); }
    return t;
  }
}

interface Candidate {
  node: Node;
  weight: Tensor;
  layout: WeightLayout;
  K: number;
  N: number;
  bias?: string;
}

/**
 * The task for a float weight rounded with `params`: the same source, layout, shape and
 * parameters give the same task (and so the same bytes, written once) in every graph and pass.
 */
export function weightTask(
  registry: TaskRegistry, source: TensorBytes, layout: WeightLayout, K: number, N: number, params: RtnParams, weightName: string,
): WeightTask {
  const p: RtnParams = { bits: params.bits, blockSize: params.blockSize, symmetric: params.symmetric, ...(params.clip ? { clip: true } : {}), ...(params.halfScales ? { halfScales: true } : {}) };
  const key = `${tensorSourceId(source)}|${layout}|${K}x${N}|b${p.bits}g${p.blockSize}${p.symmetric ? 's' : 'a'}${p.clip ? 'c' : ''}${p.halfScales ? 'h' : ''}`;
  return registry.get(key, () => ({ key, params: p, source, layout, K, N, weightName }));
}

export function quantizeMatMuls(
  loaded: LoadedModel, opts: NBitsOptions, registry: TaskRegistry, select?: NBitsSelector,
): { generated: Map<string, GeneratedTensor>; report: NBitsReport } {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  const report: NBitsReport = { quantized: [], skipped: [], excludeHits: opts.exclude.map(() => 0) };
  const generated = new Map<string, GeneratedTensor>();
  const excludeRes = opts.exclude.map(globToRegExp);
  const nodeNames = usedNodeNames(graph.node);
  const valueNames = new Set<string>([...idx.initializers.keys(), ...idx.producer.keys()]);
  for (const i of graph.input) if (i.name) valueNames.add(i.name);
  /** Per task: the initializer names in this graph (a weight shared by two nodes reuses them). */
  const namesFor = new Map<WeightTask, { B: string; scales: string; zeroPoints: string | null }>();
  const newInits: Tensor[] = [];

  const replace = new Map<Node, Node>();
  for (const node of graph.node) {
    const cand = candidate(idx, node);
    if (!cand) continue;
    const nodeName = node.name;
    const weightName = cand.weight.name;
    let excluded = false;
    excludeRes.forEach((re, i) => {
      if (re.test(nodeName) || re.test(weightName)) { report.excludeHits[i] += 1; excluded = true; }
    });
    if (excluded) { report.skipped.push({ node: nodeName, weight: weightName, reason: 'excluded' }); continue; }
    if (cand.weight.dataType !== DataType.FLOAT) {
      report.skipped.push({ node: nodeName, weight: weightName, reason: `weight data type ${cand.weight.dataType} (only float32 weights are quantised)` });
      continue;
    }
    const choice: NBitsChoice = select ? select({ node: nodeName, weight: weightName, K: cand.K, N: cand.N }) : opts;
    if (!choice) { report.skipped.push({ node: nodeName, weight: weightName, reason: 'float in the recipe' }); continue; }
    const task = weightTask(registry, tensorBytes(cand.weight, loaded.path), cand.layout, cand.K, cand.N, choice, weightName);
    let names = namesFor.get(task);
    if (!names) {
      const shape = rtnShape(cand.K, cand.N, choice);
      const fresh = (base: string): string => uniqueName(valueNames, base);
      names = {
        B: fresh(`${weightName}_Q${choice.bits}`),
        scales: fresh(`${weightName}_scales`),
        zeroPoints: choice.symmetric ? null : fresh(`${weightName}_zero_points`),
      };
      namesFor.set(task, names);
      newInits.push({ name: names.B, dataType: DataType.UINT8, dims: [cand.N, shape.nBlocks, shape.blobSize] });
      generated.set(names.B, { tasks: [task], part: 'B' });
      newInits.push({ name: names.scales, dataType: DataType.FLOAT, dims: [cand.N, shape.nBlocks] });
      generated.set(names.scales, { tasks: [task], part: 'scales' });
      if (names.zeroPoints) {
        newInits.push({ name: names.zeroPoints, dataType: DataType.UINT8, dims: [cand.N, shape.zpCols] });
        generated.set(names.zeroPoints, { tasks: [task], part: 'zeroPoints' });
      }
    }
    const inputs = [node.input[0], names.B, names.scales];
    if (names.zeroPoints || cand.bias) inputs.push(names.zeroPoints ?? '');
    if (cand.bias) inputs.push('', cand.bias);
    const attributes = [makeIntAttribute('K', cand.K), makeIntAttribute('N', cand.N), makeIntAttribute('bits', choice.bits), makeIntAttribute('block_size', choice.blockSize)];
    if (choice.accuracyLevel > 0) attributes.push(makeIntAttribute('accuracy_level', choice.accuracyLevel));
    replace.set(node, {
      name: uniqueName(nodeNames, nodeName ? `${nodeName}_Q${choice.bits}` : `MatMulNBits_${node.output[0]}`),
      opType: 'MatMulNBits',
      domain: 'com.microsoft',
      input: inputs,
      output: [node.output[0]],
      attribute: attributes,
    });
    report.quantized.push({ node: nodeName, weight: weightName, K: cand.K, N: cand.N });
  }
  if (replace.size > 0) {
    graph.node = graph.node.map((n) => replace.get(n) ?? n);
    graph.initializer = [...graph.initializer, ...newInits];
    ensureOpset(loaded.model, 'com.microsoft', 1);
  }
  return { generated, report };
}

/** A MatMul/Gemm this pass can rewrite, or undefined. */
function candidate(idx: GraphIndex, node: Node): Candidate | undefined {
  if (node.domain !== '' || node.input.length < 2 || node.output.length !== 1) return undefined;
  if (node.opType === 'MatMul') {
    const b = node.input[1];
    const w = idx.initializers.get(b);
    if (w) {
      const d = dimsOf(w);
      return d.length === 2 ? { node, weight: w, layout: 'KN', K: d[0], N: d[1] } : undefined;
    }
    // W^T written as Transpose(W) of a constant [N, K] weight (how a tied lm_head can look).
    const t = idx.producer.get(b);
    if (t && t.opType === 'Transpose' && t.domain === '') {
      const perm = readIntsAttribute(t, 'perm');
      const wt = idx.initializers.get(t.input[0] ?? '');
      if (!wt || (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0))) return undefined;
      const d = dimsOf(wt);
      return d.length === 2 ? { node, weight: wt, layout: 'NK', K: d[1], N: d[0] } : undefined;
    }
    return undefined;
  }
  if (node.opType === 'Gemm') {
    if (readIntAttribute(node, 'transA', 0) !== 0 || readFloatAttribute(node, 'alpha', 1) !== 1) return undefined;
    const w = idx.initializers.get(node.input[1]);
    if (!w) return undefined;
    const d = dimsOf(w);
    if (d.length !== 2) return undefined;
    const transB = readIntAttribute(node, 'transB', 0) === 1;
    const K = transB ? d[1] : d[0];
    const N = transB ? d[0] : d[1];
    let bias: string | undefined;
    const c = node.input[2];
    if (c) {
      // MatMulNBits adds a [N] bias; other Gemm C shapes (or beta != 1) stay as they are.
      const ct = idx.initializers.get(c);
      if (!ct || readFloatAttribute(node, 'beta', 1) !== 1) return undefined;
      const cd = dimsOf(ct);
      if (!(cd.length === 1 && cd[0] === N) || ct.dataType !== DataType.FLOAT) return undefined;
      bias = c;
    }
    return { node, weight: w, layout: transB ? 'NK' : 'KN', K, N, bias };
  }
  return undefined;
}


/** `*` any run, `?` one character; the whole name must match. */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}
