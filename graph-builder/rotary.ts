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
 * The rotation angles of every token, [B, S, D/2] float32 (shared by both RoPE forms below).
 *
 *   position_ids [B,S] ──Cast(f32)──Unsqueeze(-1)──Mul(inv_freq [D/2])──▶ freqs [B,S,D/2]
 */
function ropeAngles(b: GraphBuilder, positionIds: string, headDim: number, theta: number): string {
  const pos = b.op('Cast', [positionIds], { attrs: { to: 1 /* FLOAT */ } });
  const posCol = b.op('Unsqueeze', [pos, b.constInt64([-1])]);
  return b.op('Mul', [posCol, b.constFloat(ropeInvFreq(headDim, theta))]);
}

/**
 * cos/sin tables for the positions, [B, 1, S, D] (broadcast over heads). Computed once per graph.
 *
 *   angles [B,S,D/2] ──Concat(angles, angles, -1)──▶ emb [B,S,D] ──Unsqueeze(1)──┬──Cos──▶ cos
 *                                                                               └──Sin──▶ sin
 */
export function rotaryCosSin(
  b: GraphBuilder, positionIds: string, headDim: number, theta: number,
): { cos: string; sin: string } {
  const freqs = ropeAngles(b, positionIds, headDim, theta);
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

/** Inputs of com.microsoft.RotaryEmbedding shared by every layer of a fused graph. */
export interface RotaryCache {
  /** [B*S, D/2]: row b*S+s holds cos / sin of the angles of position_ids[b, s]. */
  cos: string; sin: string;
  /** [B, S] int64: the cache row of each token, b*S+s. */
  rows: string;
}

/**
 * cos/sin caches for com.microsoft.RotaryEmbedding with one row per token instead of a table
 * indexed by position: the angles are the plain graph's own (same Cast and Mul in float32), any
 * position value works (no max-position table), and the cache is only B*S rows. Each token then
 * reads its own row, so RotaryEmbedding gets `rows` (0 .. B*S-1 in [B,S]) as its position_ids.
 *
 *   angles [B,S,D/2] ──Reshape([-1,D/2])──┬──Cos──▶ cos [B*S,D/2]
 *                                         └──Sin──▶ sin [B*S,D/2]
 *   position_ids ──Size──Range(0, B*S, 1)──Reshape(Shape(position_ids))──▶ rows [B,S]
 */
export function rotaryCache(b: GraphBuilder, positionIds: string, headDim: number, theta: number): RotaryCache {
  const perToken = b.op('Reshape', [ropeAngles(b, positionIds, headDim, theta), b.constInt64([-1, headDim / 2])]);
  const count = b.op('Size', [positionIds]);
  const range = b.op('Range', [b.constInt64(0), count, b.constInt64(1)]);
  const rows = b.op('Reshape', [range, b.op('Shape', [positionIds])], { name: 'Rows' });
  return { cos: b.op('Cos', [perToken]), sin: b.op('Sin', [perToken]), rows };
}
