import {
  DataType, GraphIndex, ensureOpset, makeFloatAttribute, makeIntAttribute, opsetVersion, pruneValueInfo,
  readAttribute, readIntAttribute, readIntsAttribute, uniqueName, usedNodeNames,
  type LoadedModel, type Node,
} from '../common/onnx/index.js';

/**
 * Finds decomposed RMSNorm subgraphs by structure and replaces each with one
 * SimplifiedLayerNormalization node (ONNX Runtime registers it in the default ONNX domain):
 *
 *   x ──► Pow(x, 2) | Mul(x, x)
 *   │       └► ReduceMean(last axis, keepdims) ─► Add(eps) ─► Sqrt ─┐
 *   │                                                               ├► Reciprocal | Div(1, .) ─► Mul(x, .) ─┐
 *   └───────────────────────────────────────────────────────────────┴► Div(x, .) ────────────────────────────┤
 *                                                                        [identity Cast] ─► Mul(., weight) ─► y
 *   becomes   x ─► SimplifiedLayerNormalization(x, weight; epsilon, axis=-1, stash_type=1) ─► y
 *
 * An identity Cast (to the type the value already has) in front of x or before the weight Mul
 * is absorbed. Every intermediate must have no other consumer and must not be a graph output.
 *
 * With `skip`, a residual Add whose sum feeds a fused norm is folded in too:
 *   s = Add(a, b); y = SLN(s, w)   becomes   y, _, _, s = SkipSimplifiedLayerNormalization(a, b, w)
 * (com.microsoft), when both Add inputs are activations of the same known (or unknown) shape.
 */

export interface FuseOptions {
  /** Also fold residual Adds into SkipSimplifiedLayerNormalization. */
  skip: boolean;
}

export interface FuseReport {
  rmsNorm: number;
  skipRmsNorm: number;
}

interface RmsMatch {
  /** Nodes removed by the rewrite (the weight Mul is replaced in place). */
  remove: Node[];
  weightMul: Node;
  input: string;
  weight: string;
  epsilon: number;
}

export function fuseRmsNorm(loaded: LoadedModel, opts: FuseOptions): FuseReport {
  const graph = loaded.graph;
  const report: FuseReport = { rmsNorm: 0, skipRmsNorm: 0 };
  const idx = new GraphIndex(graph, loaded.path);
  const opset = opsetVersion(loaded.model, '') ?? 1;
  const taken = new Set<Node>();
  const matches: RmsMatch[] = [];
  for (const node of graph.node) {
    if (node.opType !== 'ReduceMean' || node.domain !== '' || taken.has(node)) continue;
    const m = matchRmsNorm(idx, node, opset);
    if (!m || [...m.remove, m.weightMul].some((n) => taken.has(n))) continue;
    for (const n of m.remove) taken.add(n);
    taken.add(m.weightMul);
    matches.push(m);
  }
  if (matches.length > 0) {
    const names = usedNodeNames(graph.node);
    const replace = new Map<Node, Node>();
    for (const m of matches) {
      replace.set(m.weightMul, {
        name: uniqueName(names, m.weightMul.name ? `${m.weightMul.name}/SimplifiedLayerNorm` : `SimplifiedLayerNorm_${m.weightMul.output[0]}`),
        opType: 'SimplifiedLayerNormalization',
        domain: '',
        input: [m.input, m.weight],
        output: [m.weightMul.output[0]],
        attribute: [makeIntAttribute('axis', -1), makeFloatAttribute('epsilon', m.epsilon), makeIntAttribute('stash_type', 1)],
      });
    }
    const removed = new Set(matches.flatMap((m) => m.remove));
    graph.node = graph.node.filter((n) => !removed.has(n)).map((n) => replace.get(n) ?? n);
    report.rmsNorm = matches.length;
  }
  if (opts.skip) report.skipRmsNorm = fuseSkip(loaded);
  if (report.skipRmsNorm > 0) ensureOpset(loaded.model, 'com.microsoft', 1);
  pruneValueInfo(graph);
  return report;
}

function matchRmsNorm(idx: GraphIndex, reduce: Node, opset: number): RmsMatch | null {
  const square = idx.producer.get(reduce.input[0] ?? '');
  if (!square || square.domain !== '') return null;
  let x: string;
  if (square.opType === 'Pow') {
    if (idx.scalar(square.input[1] ?? '') !== 2) return null;
    x = square.input[0];
  } else if (square.opType === 'Mul' && square.input[0] === square.input[1]) {
    x = square.input[0];
  } else return null;
  if (idx.soleConsumer(square.output[0]) !== reduce) return null;
  if (readIntAttribute(reduce, 'keepdims', 1) !== 1) return null;
  if (!reducesLastAxisOnly(idx, reduce, x, opset)) return null;

  const add = idx.soleConsumer(reduce.output[0]);
  if (!add || add.opType !== 'Add' || add.input.length !== 2) return null;
  const epsName = add.input[0] === reduce.output[0] ? add.input[1] : add.input[0];
  const epsilon = idx.scalar(epsName);
  if (epsilon === null || !(epsilon >= 0)) return null;
  const sqrt = idx.soleConsumer(add.output[0]);
  if (!sqrt || sqrt.opType !== 'Sqrt') return null;
  const afterSqrt = idx.soleConsumer(sqrt.output[0]);
  if (!afterSqrt) return null;

  const chain: Node[] = [square, reduce, add, sqrt];
  let normed: Node;
  if (afterSqrt.opType === 'Div' && afterSqrt.input[1] === sqrt.output[0] && afterSqrt.input[0] === x) {
    normed = afterSqrt; // x / sqrt(mean + eps)
  } else {
    let inv: Node;
    if (afterSqrt.opType === 'Reciprocal') inv = afterSqrt;
    else if (afterSqrt.opType === 'Div' && afterSqrt.input[1] === sqrt.output[0] && idx.scalar(afterSqrt.input[0]) === 1) inv = afterSqrt;
    else return null;
    chain.push(inv);
    const mul = idx.soleConsumer(inv.output[0]);
    if (!mul || mul.opType !== 'Mul' || mul.input.length !== 2) return null;
    const other = mul.input[0] === inv.output[0] ? mul.input[1] : mul.input[0];
    if (other !== x) return null;
    normed = mul;
  }
  chain.push(normed);
  if (!isFloatDomainNodes(chain)) return null;

  // Optional identity Cast between the normalised value and the weight Mul.
  let normedOut = normed.output[0];
  let next = idx.soleConsumer(normedOut);
  if (next && next.opType === 'Cast' && isIdentityCast(idx, next)) {
    chain.push(next);
    normedOut = next.output[0];
    next = idx.soleConsumer(normedOut);
  }
  const weightMul = next;
  if (!weightMul || weightMul.opType !== 'Mul' || weightMul.domain !== '' || weightMul.input.length !== 2) return null;
  const weight = weightMul.input[0] === normedOut ? weightMul.input[1] : weightMul.input[0];
  const w = idx.initializers.get(weight);
  if (!w || w.dims?.length !== 1) return null;
  const wLen = Number(w.dims[0]);
  const xShape = idx.shapes.get(x);
  const lastDim = xShape && xShape.length > 0 ? xShape[xShape.length - 1] : -1;
  if (lastDim > 0 ? wLen !== lastDim : wLen < 2) return null;

  // A leading identity Cast whose output only feeds this norm is absorbed as well.
  let input = x;
  const xProducer = idx.producer.get(x);
  if (xProducer && xProducer.opType === 'Cast' && isIdentityCast(idx, xProducer) && !idx.graphOutputs.has(x)
    && idx.consumersOf(x).every((c) => chain.includes(c))) {
    chain.push(xProducer);
    input = xProducer.input[0];
  }
  // SimplifiedLayerNormalization needs input and scale of one type.
  const xt = idx.elemType.get(input);
  const wt = w.dataType ?? 0;
  if (xt !== undefined && xt !== wt) return null;
  if (wt !== DataType.FLOAT && wt !== DataType.FLOAT16 && wt !== DataType.DOUBLE && wt !== DataType.BFLOAT16) return null;
  // Every intermediate value must be private to the pattern.
  for (const n of chain) {
    for (const out of n.output) {
      if (idx.graphOutputs.has(out)) return null;
      if (idx.consumersOf(out).some((c) => !chain.includes(c) && c !== weightMul)) return null;
    }
  }
  return { remove: chain, weightMul, input, weight, epsilon: Math.fround(epsilon) };
}

/** True when the ReduceMean reduces only the last axis (axes as attribute before opset 18, input from 18). */
function reducesLastAxisOnly(idx: GraphIndex, reduce: Node, x: string, opset: number): boolean {
  let axes: number[] | undefined;
  if (opset >= 18 && reduce.input.length >= 2 && reduce.input[1]) {
    const v = idx.constantValues(reduce.input[1]);
    if (!v) return false;
    axes = v;
  } else axes = readIntsAttribute(reduce, 'axes');
  if (!axes || axes.length !== 1) return false;
  if (axes[0] === -1) return true;
  const rank = idx.rank(x);
  return rank !== undefined && axes[0] === rank - 1;
}

function isIdentityCast(idx: GraphIndex, cast: Node): boolean {
  const to = Number(readAttribute(cast, 'to')?.i ?? 0);
  const from = idx.elemType.get(cast.input[0] ?? '');
  return from !== undefined && from === to;
}

function isFloatDomainNodes(nodes: Node[]): boolean {
  return nodes.every((n) => n.domain === '');
}

/** Folds `Add(a, b) -> SimplifiedLayerNormalization` into SkipSimplifiedLayerNormalization. */
function fuseSkip(loaded: LoadedModel): number {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  /** Fused SkipSimplifiedLayerNormalization by the norm it replaces, and by the Add whose place it takes. */
  const replace = new Map<Node, Node>();
  const addFor = new Map<Node, Node>();
  const removed = new Set<Node>();
  const names = usedNodeNames(graph.node);
  for (const sln of graph.node) {
    if (sln.opType !== 'SimplifiedLayerNormalization' || sln.domain !== '' || sln.output.length !== 1) continue;
    const sum = sln.input[0];
    const add = idx.producer.get(sum);
    if (!add || add.opType !== 'Add' || add.domain !== '' || removed.has(add) || add.input.length !== 2) continue;
    const [a, b] = add.input;
    if (idx.constantTensor(a) || idx.constantTensor(b)) continue;
    // SkipSimplifiedLayerNormalization wants input and skip of one shape: refuse a known broadcast.
    const sa = idx.shapes.get(a);
    const sb = idx.shapes.get(b);
    if (sa && sb && (sa.length !== sb.length || sa.some((d, i) => d > 0 && sb[i] > 0 && d !== sb[i]))) continue;
    if ((sa && sa.length < 2) || (sb && sb.length < 2)) continue;
    const ta = idx.elemType.get(a);
    const tb = idx.elemType.get(b);
    if (ta !== undefined && tb !== undefined && ta !== tb) continue;
    // The sum stays available to its other consumers through the fused node's 4th output.
    const others = idx.consumersOf(sum).filter((c) => c !== sln);
    const keepSum = others.length > 0 || idx.graphOutputs.has(sum);
    const epsilon = readAttribute(sln, 'epsilon')?.f ?? 1e-5;
    removed.add(add);
    const fused: Node = {
      name: uniqueName(names, sln.name ? `${sln.name}/Skip` : `SkipSimplifiedLayerNorm_${sln.output[0]}`),
      opType: 'SkipSimplifiedLayerNormalization',
      domain: 'com.microsoft',
      input: [a, b, sln.input[1]],
      output: keepSum ? [sln.output[0], '', '', sum] : [sln.output[0]],
      attribute: [makeFloatAttribute('epsilon', epsilon)],
    };
    replace.set(sln, fused);
    // The fused node takes the Add's place so the sum exists before its other consumers run.
    addFor.set(add, fused);
  }
  if (replace.size === 0) return 0;
  graph.node = graph.node
    .filter((n) => !replace.has(n))
    .map((n) => addFor.get(n) ?? n);
  return replace.size;
}



