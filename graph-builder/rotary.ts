/**
 * Rotary position embedding of the Qwen3 decoder (NeoX rotate-half, "default" rope init).
 *
 * Qwen3-ASR's text model uses interleaved MRoPE with three position rows (temporal, height,
 * width); for text and audio tokens all three rows are equal, and then every frequency slot
 * reads the same position, so MRoPE is exactly plain 1-D RoPE (see fixtures/reference/rope.ts).
 * The graphs therefore take 1-D position_ids.
 */
import type { GraphBuilder } from './graph-builder.js';

/** inv_freq_i = 1 / theta^(2i / D), i < D/2, computed in float64 then stored as float32. */
export function ropeInvFreq(headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  return inv;
}

/**
 * cos/sin tables for the positions, [B, 1, S, D] (broadcast over heads). Computed once per graph.
 *
 *   position_ids [B,S] ──Cast(f32)──Unsqueeze(-1)──Mul(inv_freq [D/2])──▶ freqs [B,S,D/2]
 *   freqs ──Concat(freqs, freqs, -1)──▶ emb [B,S,D] ──Unsqueeze(1)──┬──Cos──▶ cos
 *                                                                  └──Sin──▶ sin
 */
export function rotaryCosSin(
  b: GraphBuilder, positionIds: string, headDim: number, theta: number,
): { cos: string; sin: string } {
  const pos = b.op('Cast', [positionIds], { attrs: { to: 1 /* FLOAT */ } });
  const posCol = b.op('Unsqueeze', [pos, b.constInt64([-1])]);
  const invFreq = b.constFloat(ropeInvFreq(headDim, theta));
  const freqs = b.op('Mul', [posCol, invFreq]);
  const emb = b.op('Concat', [freqs, freqs], { attrs: { axis: -1 } });
  const emb4 = b.op('Unsqueeze', [emb, b.constInt64([1])]);
  return { cos: b.op('Cos', [emb4]), sin: b.op('Sin', [emb4]) };
}

/**
 * x * cos + rotate_half(x) * sin on [B, heads, S, D], rotate_half(x) = cat(-x[D/2:], x[:D/2]).
 *
 *   x ──Split(D/2, D/2)──┬─x1──────────────┐
 *                        └─x2──Neg─────────Concat(-x2, x1)──Mul(sin)──┐
 *   x ──Mul(cos)─────────────────────────────────────────────────────Add──▶ y
 */
export function applyRotary(b: GraphBuilder, x: string, cos: string, sin: string, headDim: number): string {
  const half = headDim / 2;
  const [x1, x2] = b.node('Split', [x, b.constInt64([half, half])], { outputs: 2, attrs: { axis: -1 } });
  const rotated = b.op('Concat', [b.op('Neg', [x2]), x1], { attrs: { axis: -1 } });
  return b.op('Add', [b.op('Mul', [x, cos]), b.op('Mul', [rotated, sin])]);
}
