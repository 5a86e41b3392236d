/**
 * RMSNorm (Qwen3 / T5 style: no mean subtraction, no bias), written in the decomposed form
 * torch exports, which onnxruntime's SimplifiedLayerNormFusion (and our fuse step) turns into
 * one SimplifiedLayerNormalization node.
 */
import type { GraphBuilder } from './graph-builder.js';

/**
 * y = x / sqrt(mean(x^2, last axis) + eps) * weight
 *
 *   x ──Pow(2)──ReduceMean(-1)──Add(eps)──Sqrt──┐
 *   x ─────────────────────────────────────────Div──Mul(weight)──▶ y
 */
export function rmsNorm(b: GraphBuilder, x: string, weight: string, eps: number): string {
  const sq = b.op('Pow', [x, b.constFloat(2)]);
  const mean = b.op('ReduceMean', [sq], { attrs: { axes: [-1], keepdims: 1 } });
  const shifted = b.op('Add', [mean, b.constFloat(eps)]);
  const rms = b.op('Sqrt', [shifted]);
  const normed = b.op('Div', [x, rms]);
  return b.op('Mul', [normed, weight]);
}

