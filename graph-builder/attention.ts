/**
 * Qwen3 decoder self-attention: q/k/v projections, per-head RMSNorm on q and k before RoPE,
 * NeoX RoPE, then either attention over the cache (a decoder_step: cached-attention.ts) or, for
 * a prompt, GQA by repeating KV heads and causal softmax attention; o_proj.
 */
import type { GraphBuilder } from './graph-builder.js';
import { cachedAttention } from './cached-attention.js';
import { attentionCore, linear, mergeHeads, reshape, transpose } from './layers.js';
import { rmsNorm } from './rmsnorm.js';
import { applyRotary } from './rotary.js';

export interface DecoderAttentionWeights {
  q: string; k: string; v: string; o: string;
  qNorm: string; kNorm: string;
  /** Present only when the checkpoint has attention biases (Qwen3 does not). */
  qBias?: string; kBias?: string; vBias?: string; oBias?: string;
}

export interface DecoderAttentionShape { heads: number; kvHeads: number; headDim: number; rmsEps: number }

export interface DecoderAttentionContext {
  /** RoPE tables [B, 1, S, D]. */
  cos: string; sin: string;
  /** Additive mask broadcastable to [B, heads, S, T] (absent for a single-token step). */
  mask?: string;
  /** This layer's cache [B, kvHeads, P, D] (decoder_step: S = 1 new token). */
  pastKey?: string; pastValue?: string;
}

/**
 * Returns the attention output [B, S, hidden] and this layer's new keys/values [B, kvHeads, S, D]
 * (post-RoPE; without the past, which the caller appends them to for present_keys / present_values).
 *
 *   x ──q_proj──Reshape[0,0,h,D]──q_norm──Transpose──RoPE──▶ q ─────────────────────────────┐
 *   x ──k_proj──Reshape[0,0,kv,D]──k_norm──Transpose──RoPE──▶ key ──┐                       │
 *   x ──v_proj──Reshape[0,0,kv,D]──Transpose───────────────▶ value ─┤                       │
 *     with a cache (S = 1): cachedAttention(q, key, value, past_key, past_value) ◀──────────┤
 *     without: repeat_kv(key), repeat_kv(value) ──sdpa(scale 1/√D, mask)──merge heads ◀────┘
 *   ──o_proj──▶ out
 */
export function decoderSelfAttention(
  b: GraphBuilder, x: string, w: DecoderAttentionWeights, shape: DecoderAttentionShape, ctx: DecoderAttentionContext,
): { out: string; key: string; value: string } {
  const { heads, kvHeads, headDim } = shape;
  const { q, key, value } = projectQkv(b, x, w, shape, ctx.cos, ctx.sin);
  const sdpa = b.scope('sdpa');
  let merged: string;
  if (ctx.pastKey && ctx.pastValue) {
    merged = cachedAttention(sdpa, q, key, value, ctx.pastKey, ctx.pastValue, { heads, kvHeads, headDim });
  } else {
    merged = groupedAttention(b, q, key, value, shape, ctx.mask);
  }
  return { out: outProjection(b, merged, w), key, value };
}

/**
 * The query, key and value heads of `x` [B, S, hidden]: q [B,heads,S,D] and key [B,kv,S,D] after
 * per-head RMSNorm and RoPE, value [B,kv,S,D] raw (the first half of decoderSelfAttention's diagram).
 */
export function projectQkv(
  b: GraphBuilder, x: string, w: DecoderAttentionWeights, shape: DecoderAttentionShape, cos: string, sin: string,
): { q: string; key: string; value: string } {
  const { heads, kvHeads, headDim, rmsEps } = shape;
  const projectHeads = (name: string, weight: string, bias: string | undefined, n: number, norm?: string): string => {
    const y = linear(b.scope(`${name}_proj`), x, weight, bias);
    const split = reshape(b.scope(`${name}_proj`), y, [0, 0, n, headDim]);
    const normed = norm ? rmsNorm(b.scope(`${name}_norm`), split, norm, rmsEps) : split;
    return transpose(b.scope(`${name}_proj`), normed, [0, 2, 1, 3]);
  };
  const q = applyRotary(b.scope('q_rotary'), projectHeads('q', w.q, w.qBias, heads, w.qNorm), cos, sin, headDim);
  const key = applyRotary(b.scope('k_rotary'), projectHeads('k', w.k, w.kBias, kvHeads, w.kNorm), cos, sin, headDim);
  const value = projectHeads('v', w.v, w.vBias, kvHeads);
  return { q, key, value };
}

/**
 * Softmax attention of q [B,heads,S,D] over keys/values [B,kv,T,D] shared by groups of query heads,
 * with an optional additive mask broadcastable to [B,heads,S,T]; returns [B,S,heads*D].
 *
 *   key, value ──repeat_kv──▶ [B,heads,T,D] ──sdpa(q, scale 1/√D, mask)──merge heads──▶ out
 */
export function groupedAttention(
  b: GraphBuilder, q: string, key: string, value: string, shape: DecoderAttentionShape, mask?: string,
): string {
  const { heads, kvHeads, headDim } = shape;
  const groups = heads / kvHeads;
  const kAll = repeatKv(b.scope('k_repeat'), key, groups, heads, headDim);
  const vAll = repeatKv(b.scope('v_repeat'), value, groups, heads, headDim);
  const sdpa = b.scope('sdpa');
  const attn = attentionCore(sdpa, q, kAll, vAll, { scale: 1 / Math.sqrt(headDim), mask });
  return mergeHeads(sdpa, attn, heads * headDim);
}

/** o_proj of the merged heads. */
export function outProjection(b: GraphBuilder, merged: string, w: DecoderAttentionWeights): string {
  return linear(b.scope('o_proj'), merged, w.o, w.oBias);
}

/**
 * GQA: [B, kv, T, D] -> [B, kv*groups, T, D], query head h reading kv head floor(h / groups)
 * (torch repeat_kv / repeat_interleave order).
 *
 *   x ──Unsqueeze(2)──Expand([1,1,groups,1,1])──Reshape([0,heads,-1,D])──▶ y
 */
export function repeatKv(b: GraphBuilder, x: string, groups: number, heads: number, headDim: number): string {
  if (groups === 1) return x;
  const u = b.op('Unsqueeze', [x, b.constInt64([2])]);
  const e = b.op('Expand', [u, b.constInt64([1, 1, groups, 1, 1])]);
  return reshape(b, e, [0, heads, -1, headDim]);
}
