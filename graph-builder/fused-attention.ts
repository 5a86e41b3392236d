/**
 * Qwen3 decoder self-attention on onnxruntime's contrib kernels (`export --attention fused`):
 * com.microsoft.RotaryEmbedding for q and k, com.microsoft.GroupQueryAttention for the cache
 * append, the GQA head sharing, the causal softmax and the attention product. Same arithmetic as
 * attention.ts (q/k per-head RMSNorm before RoPE, NeoX rotate-half, scale 1/√D), same contract
 * I/O: GroupQueryAttention's present_key/value [B, kv, P+S, D] are the stacked caches' layers.
 *
 * GroupQueryAttention semantics relied on (onnxruntime docs/ContribOperators.md and the CPU
 * kernel, 1.30): q/k/v are BSH ([B, S, heads*D]); past/present are BNSH; seqlens_k is int32 [B]
 * holding total-1 per batch entry (B elements: the kernel reads seqlens_k[b], 1.30 rejects fewer);
 * total_sequence_length is an int32 scalar. S == total is the "first prompt" case (causal
 * attention over the new tokens only, no past read): decoder_init (S tokens, no past,
 * seqlens_k = S-1) and a decoder_step on an empty cache (P = 0). Otherwise S must be 1 (a step:
 * seqlens_k = P, total = P+1; the kernel takes the past length as total - S).
 * do_rotary stays 0: RoPE must follow q_norm/k_norm and use position_ids, while the kernel's own
 * rotary would take positions from seqlens_k. RotaryEmbedding runs on the 3-D BSH tensors, so no
 * Transpose is needed anywhere: q/k/v go from the projections straight into GroupQueryAttention.
 */
import { floatAttrValue, type GraphBuilder } from './graph-builder.js';
import type { DecoderAttentionShape, DecoderAttentionWeights } from './attention.js';
import { linear, reshape } from './layers.js';
import { MS_DOMAIN } from './model.js';
import { rmsNorm } from './rmsnorm.js';
import type { RotaryCache } from './rotary.js';

/** GroupQueryAttention's length inputs, computed once per graph. */
export interface GqaLengths {
  /** int32 [B]: total sequence length - 1 of every batch entry. */
  seqlensK: string;
  /** int32 scalar: total sequence length (past + new). */
  total: string;
}

export interface FusedAttentionContext {
  rotary: RotaryCache;
  lengths: GqaLengths;
  /** This layer's cache [B, kvHeads, P, D] (decoder_step). */
  pastKey?: string; pastValue?: string;
}

/**
 * Lengths for a step: past length P from past_keys [L,B,KV,P,D], every batch entry at P.
 *
 *   past_keys ──Shape[3:4]──Cast(i32)──▶ P [1] ──Expand(Shape(input_embeds)[0:1])──▶ seqlens_k [B]
 *   P ──Add(1)──Squeeze──▶ total
 */
export function stepGqaLengths(b: GraphBuilder, pastKeys: string, embeds: string): GqaLengths {
  const past = b.op('Cast', [b.op('Shape', [pastKeys], { attrs: { start: 3, end: 4 } })], { attrs: { to: 6 /* INT32 */ } });
  const batch = b.op('Shape', [embeds], { attrs: { start: 0, end: 1 } });
  const seqlensK = b.op('Expand', [past, batch]);
  const total = b.op('Squeeze', [b.op('Add', [past, b.constTensor('int32', [1], Int32Array.of(1))]), b.constInt64([0])]);
  return { seqlensK, total };
}

/**
 * Lengths for a prefill of S tokens with no past: every batch entry at total S.
 *
 *   input_ids [B,S] ──Shape[1:2]──Cast(i32)──▶ S [1] ──Sub(1)──Expand(Shape(input_ids)[0:1])──▶ seqlens_k [B]
 *   S ──Squeeze──▶ total
 */
export function prefillGqaLengths(b: GraphBuilder, inputIds: string): GqaLengths {
  const seq = b.op('Cast', [b.op('Shape', [inputIds], { attrs: { start: 1, end: 2 } })], { attrs: { to: 6 /* INT32 */ } });
  const batch = b.op('Shape', [inputIds], { attrs: { start: 0, end: 1 } });
  const seqlensK = b.op('Expand', [b.op('Sub', [seq, b.constTensor('int32', [1], Int32Array.of(1))]), batch]);
  const total = b.op('Squeeze', [seq, b.constInt64([0])]);
  return { seqlensK, total };
}

/**
 * Returns the attention output [B, S, hidden] and this layer's keys/values [B, kvHeads, P+S, D]
 * (post-RoPE, past included) for present_keys / present_values.
 *
 *   x ──q_proj──Reshape[0,0,h,D]──q_norm──Reshape[0,0,h*D]──RotaryEmbedding(rows, cos, sin)──▶ q ──┐
 *   x ──k_proj──Reshape[0,0,kv,D]──k_norm──Reshape[0,0,kv*D]──RotaryEmbedding(rows, cos, sin)──▶ k ─┤
 *   x ──v_proj───────────────────────────────────────────────────────────────────────────────▶ v ─┤
 *   past_key, past_value (step only), seqlens_k, total ────────────────────────────────────────────┤
 *                     GroupQueryAttention(num_heads h, kv_num_heads kv, scale 1/√D) ◀───────────────┘
 *                     ├─▶ out [B,S,h*D] ──o_proj──▶ out
 *                     └─▶ present_key, present_value [B,kv,P+S,D] ──▶ key, value
 */
export function fusedDecoderAttention(
  b: GraphBuilder, x: string, w: DecoderAttentionWeights, shape: DecoderAttentionShape, ctx: FusedAttentionContext,
): { out: string; key: string; value: string } {
  const { heads, kvHeads, headDim, rmsEps } = shape;
  const normedRotated = (name: 'q' | 'k', weight: string, bias: string | undefined, norm: string, n: number): string => {
    const proj = b.scope(`${name}_proj`);
    const y = linear(proj, x, weight, bias);
    const normed = rmsNorm(b.scope(`${name}_norm`), reshape(proj, y, [0, 0, n, headDim]), norm, rmsEps);
    const packed = reshape(b.scope(`${name}_norm`), normed, [0, 0, n * headDim]);
    // 3-D input: RotaryEmbedding takes head_size = 2 * cos_cache.shape[1] and rotates every head.
    return b.scope(`${name}_rotary`).op('RotaryEmbedding', [packed, ctx.rotary.rows, ctx.rotary.cos, ctx.rotary.sin], { domain: MS_DOMAIN });
  };
  const q = normedRotated('q', w.q, w.qBias, w.qNorm, heads);
  const k = normedRotated('k', w.k, w.kBias, w.kNorm, kvHeads);
  const v = linear(b.scope('v_proj'), x, w.v, w.vBias);
  const past = ctx.pastKey && ctx.pastValue ? [ctx.pastKey, ctx.pastValue] : ['', ''];
  const [out, key, value] = b.node('GroupQueryAttention', [q, k, v, ...past, ctx.lengths.seqlensK, ctx.lengths.total], {
    domain: MS_DOMAIN, outputs: 3,
    attrs: { num_heads: heads, kv_num_heads: kvHeads, scale: floatAttrValue(1 / Math.sqrt(headDim)) },
  });
  return { out: linear(b.scope('o_proj'), out, w.o, w.oBias), key, value };
}
