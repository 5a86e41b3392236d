/**
 * Make-functions shared by the encoder and decoder graphs: one function per subgraph, each
 * taking a scoped GraphBuilder (the scope names the layer: `b.scope('q_proj')`) and value
 * names, returning the output value name. Weights are loaded by weights.ts.
 *
 * Usage:
 *   const q = linear(attn.scope('q_proj'), x, wq, bq);          // /…/q_proj/MatMul, /…/q_proj/Add
 *   const h = gelu(mlp.scope('act'), linear(mlp.scope('fc1'), x, w1, b1));
 *   const n = layerNorm(layer.scope('ln'), x, scale, bias, 1e-5);
 *   const heads = splitHeads(attn, q, numHeads, headDim);         // [B,S,H*D] -> [B,H,S,D]
 *   const o = attentionCore(attn, qh, kh, vh, { scale: 1 / Math.sqrt(D), mask });
 *   const y = mergeHeads(attn, o, numHeads * headDim);            // [B,H,S,D] -> [B,S,H*D]
 */
import { floatAttrValue, type GraphBuilder } from './graph-builder.js';

/**
 * y = x @ W (+ bias), W stored [in, out].
 *
 *   x ──MatMul(W)──▶ (Add(bias)) ──▶ y
 */
export function linear(b: GraphBuilder, x: string, weight: string, bias?: string): string {
  const y = b.op('MatMul', [x, weight]);
  return bias ? b.op('Add', [y, bias]) : y;
}

/** LayerNormalization over the last axis (opset 17 op, one node). */
export function layerNorm(b: GraphBuilder, x: string, scale: string, bias: string, eps: number): string {
  return b.op('LayerNormalization', [x, scale, bias], { attrs: { axis: -1, epsilon: floatAttrValue(eps) } });
}

/**
 * Exact GELU (torch's default, erf form): 0.5 * x * (1 + erf(x / sqrt(2))).
 * Opset 17 has no Gelu op; this is the pattern ORT's optimizer fuses into Gelu.
 *
 *   x ──Div(√2)──Erf──Add(1)──┐
 *   x ────────────────────────Mul──Mul(0.5)──▶ y
 */
export function gelu(b: GraphBuilder, x: string): string {
  const scaled = b.op('Div', [x, b.constFloat(Math.SQRT2)]);
  const erf = b.op('Erf', [scaled]);
  const onePlus = b.op('Add', [erf, b.constFloat(1)]);
  const prod = b.op('Mul', [x, onePlus]);
  return b.op('Mul', [prod, b.constFloat(0.5)]);
}

/** SiLU: x * sigmoid(x). (Sigmoid, Mul.) */
export function silu(b: GraphBuilder, x: string): string {
  return b.op('Mul', [x, b.op('Sigmoid', [x])]);
}

/** Reshape with a constant target shape (0 copies a dim, -1 infers one). */
export function reshape(b: GraphBuilder, x: string, shape: readonly number[]): string {
  return b.op('Reshape', [x, b.constInt64(shape)]);
}

export function transpose(b: GraphBuilder, x: string, perm: readonly number[]): string {
  return b.op('Transpose', [x], { attrs: { perm: [...perm] } });
}

/**
 * [B, S, heads*headDim] -> [B, heads, S, headDim]
 *
 *   x ──Reshape([0,0,heads,headDim])──Transpose(0,2,1,3)──▶ y
 */
export function splitHeads(b: GraphBuilder, x: string, heads: number, headDim: number): string {
  return transpose(b, reshape(b, x, [0, 0, heads, headDim]), [0, 2, 1, 3]);
}

/**
 * [B, heads, S, headDim] -> [B, S, heads*headDim]
 *
 *   x ──Transpose(0,2,1,3)──Reshape([0,0,width])──▶ y
 */
export function mergeHeads(b: GraphBuilder, x: string, width: number): string {
  return reshape(b, transpose(b, x, [0, 2, 1, 3]), [0, 0, width]);
}

/**
 * Scaled dot-product attention on head-split tensors.
 * q [B,H,S,D], k and v [B,H,T,D], optional additive mask broadcastable to [B,H,S,T].
 *
 *   k ──Transpose(0,1,3,2)──┐
 *   q ─────────────────────MatMul──Mul(scale)──(Add mask)──Softmax(-1)──MatMul(v)──▶ [B,H,S,D]
 */
export function attentionCore(
  b: GraphBuilder, q: string, k: string, v: string, opts: { scale: number; mask?: string },
): string {
  const kT = transpose(b, k, [0, 1, 3, 2]);
  const scores = b.op('MatMul', [q, kT]);
  const scaled = b.op('Mul', [scores, b.constFloat(opts.scale)]);
  const masked = opts.mask ? b.op('Add', [scaled, opts.mask]) : scaled;
  const probs = b.op('Softmax', [masked], { attrs: { axis: -1 } });
  return b.op('MatMul', [probs, v]);
}
