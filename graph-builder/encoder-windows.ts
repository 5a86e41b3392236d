/**
 * Valid-token selection and the attention windows of the encoder, as graph ops.
 *
 * Valid tokens: every chunk but the last is full, and the tail chunk's invalid tokens sit
 * at its end, so the official `padded_embed[padded_mask_after_cnn]` is exactly the first
 * N rows of the chunk-major token sequence, N = `_get_feat_extract_output_lengths(T)`.
 *
 * Windows: the official encoder attends bidirectionally inside consecutive blocks of
 * `window` tokens (cu_seqlens; 104 for the real models), the last block shorter. Hidden
 * states stay [B, N, d] (projections and FFN never touch padding); only q, k and v are
 * zero-padded to nw*window rows and viewed as [B*nw, window, d], so attention is a batch of
 * window x window blocks (cost N*window, not N^2). Padded rows are masked as keys with
 * ENCODER_MASK_VALUE; as queries they give throwaway rows dropped before out_proj. Every
 * window holds at least one real token, so no softmax row is all-masked.
 */
import type { GraphBuilder } from './graph-builder.js';
import { convStackLength } from './encoder-lengths.js';
import type { MelSizes } from './encoder-frontend.js';

/**
 * Additive attention-mask value for padded key positions.
 * Finite and far below any real score (|score| is O(10..100)), so exp(score + mask - max)
 * underflows to exactly 0 in float32 and a padded key contributes nothing. Unlike
 * -3.4e38 (torch.finfo.min) it cannot overflow to -inf when added to a negative score, and
 * the mask is chosen with Where (never multiplied: 0 * -inf would be NaN), so even a later
 * float16 conversion, which would turn it into -inf, leaves no NaN (each window has a real key).
 */
export const ENCODER_MASK_VALUE = -1e9;

/**
 * N = floor(T/c) * tokensPerChunk + f(f(f(T mod c))), f(t) = floor((t+1)/2): the official
 * length formula. (t+1)/2 keeps every operand non-negative, where ONNX integer Div (which
 * truncates) agrees with Python's floor division.
 *
 *   T ──Mod(c)──[Add(1)──Div(2)] x3──┐
 *   T ──Div(c)──Mul(tokensPerChunk)──Add──▶ N [1]
 */
export function validTokenCount(b: GraphBuilder, sizes: MelSizes, chunkFrames: number): string {
  const c = b.constInt64([chunkFrames]);
  const one = b.constInt64([1]);
  const two = b.constInt64([2]);
  let tail = b.op('Mod', [sizes.frames, c], { attrs: { fmod: 0 }, name: 'TailFrames' });
  for (let k = 1; k <= 3; k++) tail = b.op('Div', [b.op('Add', [tail, one], { name: `Conv${k}Add` }), two], { name: `Conv${k}Div` });
  const full = b.op('Mul', [b.op('Div', [sizes.frames, c], { name: 'FullChunks' }), b.constInt64([convStackLength(chunkFrames)])]);
  return b.op('Add', [full, tail], { name: 'TokenCount' });
}

/** Runtime window layout, computed once and shared by every layer (all int64). */
export interface WindowLayout {
  /** Valid tokens N, shape [1]. */
  tokens: string;
  /** nw * window: rows after padding, shape [1]. */
  paddedTokens: string;
  /** Pad's pads for [B, N, d] -> [B, nw*window, d]: [0,0,0, 0,P-N,0]. */
  pads: string;
  /** Reshape target [B, -1, d] taking windows back to one row per token. */
  tokenShape: string;
}

/**
 *   N ──Add(w-1)──Div(w)──Mul(w)──▶ P          P − N ──Concat([0,0,0,0], ·, [0])──▶ pads
 *   B ──Concat(·, [-1, d])──▶ tokenShape
 */
export function windowLayout(b: GraphBuilder, tokens: string, sizes: Pick<MelSizes, 'batch'>, window: number, d: number): WindowLayout {
  const w = b.constInt64([window]);
  const windows = b.op('Div', [b.op('Add', [tokens, b.constInt64([window - 1])]), w], { name: 'WindowCount' });
  const paddedTokens = b.op('Mul', [windows, w], { name: 'PaddedTokens' });
  const extra = b.op('Sub', [paddedTokens, tokens], { name: 'PadRows' });
  const pads = b.op('Concat', [b.constInt64([0, 0, 0, 0]), extra, b.constInt64([0])], { attrs: { axis: 0 }, name: 'Pads' });
  const tokenShape = b.op('Concat', [sizes.batch, b.constInt64([-1, d])], { attrs: { axis: 0 }, name: 'TokenShape' });
  return { tokens, paddedTokens, pads, tokenShape };
}

/**
 * The N valid tokens of the chunk-major sequence [B, chunks*t, d] -> [B, N, d].
 *
 *   x ──Slice(0 : N, axis 1)──▶ y
 */
export function keepValidTokens(b: GraphBuilder, x: string, tokens: string): string {
  return b.op('Slice', [x, b.constInt64([0]), tokens, b.constInt64([1])], { name: 'SliceValid' });
}

/**
 * Tokens [B, N, d] -> windows [B*nw, window, d], zero rows after the last token.
 *
 *   x ──Pad(pads)──Reshape([-1,window,d])──▶ y
 */
export function toWindows(b: GraphBuilder, x: string, layout: WindowLayout, window: number, d: number): string {
  const padded = b.op('Pad', [x, layout.pads]);
  return b.op('Reshape', [padded, b.constInt64([-1, window, d])]);
}

/**
 * Additive key-padding mask [B*nw, 1, 1, window]: 0 for real tokens, ENCODER_MASK_VALUE for
 * padding, broadcast over heads and query rows.
 *
 *   Range(0, P)──Less(N)──Where(0, MASK)──Reshape([-1,1,1,window])──▶ [nw,1,1,w]
 *     ──Expand(B ++ [1,1,1,1])──▶ [B,nw,1,1,w] ──Reshape([-1,1,1,window])──▶ mask
 */
export function windowMask(b: GraphBuilder, layout: WindowLayout, sizes: Pick<MelSizes, 'batch'>, window: number): string {
  const scalar = (x: string, name: string): string => b.op('Squeeze', [x, b.constInt64([0])], { name });
  const idx = b.op('Range', [b.constInt64(0), scalar(layout.paddedTokens, 'SqueezePadded'), b.constInt64(1)]);
  const real = b.op('Less', [idx, scalar(layout.tokens, 'SqueezeTokens')]);
  const additive = b.op('Where', [real, b.constFloat(0), b.constFloat(ENCODER_MASK_VALUE)]);
  const perWindow = b.op('Reshape', [additive, b.constInt64([-1, 1, 1, window])], { name: 'ReshapeWindows' });
  const expandTo = b.op('Concat', [sizes.batch, b.constInt64([1, 1, 1, 1])], { attrs: { axis: 0 } });
  const batched = b.op('Expand', [perWindow, expandTo]);
  return b.op('Reshape', [batched, b.constInt64([-1, 1, 1, window])], { name: 'ReshapeBatch' });
}

/**
 * Windows [B*nw, window, d] -> the N real tokens [B, N, d] (padding rows dropped).
 *
 *   x ──Reshape(tokenShape)──Slice(0 : N, axis 1)──▶ y
 */
export function fromWindows(b: GraphBuilder, x: string, layout: WindowLayout): string {
  const flat = b.op('Reshape', [x, layout.tokenShape]);
  return b.op('Slice', [flat, b.constInt64([0]), layout.tokens, b.constInt64([1])]);
}
