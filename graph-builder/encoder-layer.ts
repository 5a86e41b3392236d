/**
 * One audio encoder layer (official Qwen3ASRAudioEncoderLayer, pre-LN) on hidden states
 * [B, N, d]: attention runs inside each window only (encoder-windows.ts).
 */
import type { ModelDims } from '../checkpoint/config.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import type { GraphBuilder } from './graph-builder.js';
import { AUDIO_TOWER } from './encoder-frontend.js';
import { fromWindows, toWindows, type WindowLayout } from './encoder-windows.js';
import { attentionCore, gelu, layerNorm, linear, mergeHeads, splitHeads } from './layers.js';
import { matmulWeight, plainWeight } from './weights.js';

/** nn.LayerNorm's default eps; the official encoder never sets another. */
export const ENCODER_LAYER_NORM_EPS = 1e-5;

/** Tensors per encoder layer (progress totals): 4 projections + fc1 + fc2 (weight + bias each), 2 LayerNorms. */
export const ENCODER_LAYER_TENSORS = 16;

/** A LayerNorm named like the checkpoint module (`self_attn_layer_norm`, `ln_post`, ...). */
export async function encoderLayerNorm(b: GraphBuilder, src: TensorSource, x: string, module: string): Promise<string> {
  const scale = await plainWeight(b, src, `${module}.weight`);
  const bias = await plainWeight(b, src, `${module}.bias`);
  return layerNorm(b, x, scale, bias, ENCODER_LAYER_NORM_EPS);
}

/**
 * A torch Linear with bias, from checkpoint module `module` (weight stored [in, out]).
 *
 *   x ──MatMul(W)──Add(bias)──▶ y
 */
export async function encoderLinear(b: GraphBuilder, src: TensorSource, x: string, module: string): Promise<string> {
  const w = await matmulWeight(b, src, `${module}.weight`);
  const bias = await plainWeight(b, src, `${module}.bias`);
  return linear(b, x, w, bias);
}

/**
 * Bidirectional multi-head self-attention inside each window, scale head_dim^-0.5, on
 * tokens [B, N, d]; only the attention core sees the padded windows.
 *
 *   x ──q_proj──to windows──split heads──┐
 *   x ──k_proj──to windows──split heads──sdpa(mask)──merge heads──from windows──out_proj──▶ y
 *   x ──v_proj──to windows──split heads──┘
 */
export async function windowedSelfAttention(
  b: GraphBuilder, src: TensorSource, x: string, module: string, ctx: EncoderAttentionContext, dims: ModelDims,
): Promise<string> {
  const { heads, dModel: d } = dims.audio;
  const headDim = d / heads;
  const project = async (name: string): Promise<string> => {
    const p = b.scope(name);
    const y = await encoderLinear(p, src, x, `${module}.${name}`);
    return splitHeads(p, toWindows(p, y, ctx.layout, ctx.window, d), heads, headDim);
  };
  const q = await project('q_proj');
  const k = await project('k_proj');
  const v = await project('v_proj');
  const sdpa = b.scope('sdpa');
  const attn = attentionCore(sdpa, q, k, v, { scale: headDim ** -0.5, mask: ctx.mask });
  const tokens = fromWindows(sdpa, mergeHeads(sdpa, attn, d), ctx.layout);
  return encoderLinear(b.scope('out_proj'), src, tokens, `${module}.out_proj`);
}

/** What every layer's attention shares: the window layout, its size and the key-padding mask. */
export interface EncoderAttentionContext {
  layout: WindowLayout;
  window: number;
  /** Additive mask [B*nw, 1, 1, window] (encoder-windows.ts windowMask). */
  mask: string;
}

/**
 * One layer on tokens [B, N, d]:
 *
 *   x ──self_attn_layer_norm──attn(windows)──Add(x)──▶ h
 *   h ──final_layer_norm──fc1──GELU──fc2──Add(h)──▶ y
 */
export async function encoderLayer(
  b: GraphBuilder, src: TensorSource, x: string, layer: number, ctx: EncoderAttentionContext, dims: ModelDims,
): Promise<string> {
  const a = dims.audio;
  if (a.dModel % a.heads !== 0) throw new Error(`audio d_model ${a.dModel} is not divisible by ${a.heads} heads`);
  const p = `${AUDIO_TOWER}.layers.${layer}`;
  const normed = await encoderLayerNorm(b.scope('self_attn_layer_norm'), src, x, `${p}.self_attn_layer_norm`);
  const attn = await windowedSelfAttention(b.scope('attn'), src, normed, `${p}.self_attn`, ctx, dims);
  const h = b.scope('residual_attn').op('Add', [x, attn]);
  const ffnIn = await encoderLayerNorm(b.scope('final_layer_norm'), src, h, `${p}.final_layer_norm`);
  const up = gelu(b.scope('act'), await encoderLinear(b.scope('fc1'), src, ffnIn, `${p}.fc1`));
  const down = await encoderLinear(b.scope('fc2'), src, up, `${p}.fc2`);
  return b.scope('residual_ffn').op('Add', [h, down]);
}
