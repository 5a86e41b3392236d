/**
 * Decoder self-attention over a full-size cache buffer (the sherpa-onnx layout's decoder.onnx,
 * shared/SHERPA-ONNX.md): the caller keeps one zero-filled buffer per layer for keys and one for
 * values, [1, T_max, kv, D], passes them whole on every call and copies the returned deltas into
 * rows cache_position[0] .. cache_position[0]+S-1 itself. So the graph reads only rows 0..P-1 of
 * the buffers (P = cache_position[0]; the rows from P on are zeros or stale), attends causally
 * within the S new rows, and returns the new rows alone in the buffer's [1, S, kv, D] layout.
 */
import type { GraphBuilder } from './graph-builder.js';
import {
  groupedAttention, outProjection, projectQkv,
  type DecoderAttentionShape, type DecoderAttentionWeights,
} from './attention.js';
import { transpose } from './layers.js';

/** torch.finfo(float32).min: the causal mask value torch uses (softmax gives exactly 0). */
const MASK_MIN = -3.4028234663852886e38;

export interface BufferAttentionContext {
  /** RoPE tables [1, 1, S, D] for the absolute positions cache_position. */
  cos: string; sin: string;
  /** Additive mask [S, P+S] (bufferCausalMask). */
  mask: string;
  /** P as a [1] int64 tensor. */
  pastLength: string;
  /** This layer's key / value buffers [1, T_max, kv, D]. */
  keyBuffer: string; valueBuffer: string;
}

/**
 * Returns the attention output [1, S, hidden] and this call's key / value rows [1, S, kv, D]
 * (keys after q/k RMSNorm and RoPE, values raw).
 *
 *   x ──projectQkv──▶ q [1,h,S,D], key [1,kv,S,D], value [1,kv,S,D]
 *   key_buffer ──Slice(0 : P, axis 1)──Transpose(0,2,1,3)──▶ [1,kv,P,D] ──Concat(key, axis 2)──▶ keys
 *   value_buffer ──(same)────────────────────────────────────────────────Concat(value)──▶ values
 *   q, keys, values ──groupedAttention(mask [S,P+S])──o_proj──▶ out
 *   key ──Transpose(0,2,1,3)──▶ key_delta [1,S,kv,D]        value ──Transpose──▶ value_delta
 */
export function bufferAttention(
  b: GraphBuilder, x: string, w: DecoderAttentionWeights, shape: DecoderAttentionShape, ctx: BufferAttentionContext,
): { out: string; keyDelta: string; valueDelta: string } {
  const { q, key, value } = projectQkv(b, x, w, shape, ctx.cos, ctx.sin);
  const cache = b.scope('cache');
  const zero = cache.constInt64([0]);
  const axis1 = cache.constInt64([1]);
  const pastRows = (buffer: string, name: string): string => transpose(
    cache.scope(name),
    cache.op('Slice', [buffer, zero, ctx.pastLength, axis1], { name: `Slice${name}` }),
    [0, 2, 1, 3],
  );
  const keys = cache.op('Concat', [pastRows(ctx.keyBuffer, 'Keys'), key], { attrs: { axis: 2 }, name: 'ConcatKeys' });
  const values = cache.op('Concat', [pastRows(ctx.valueBuffer, 'Values'), value], { attrs: { axis: 2 }, name: 'ConcatValues' });
  const merged = groupedAttention(b, q, keys, values, shape, ctx.mask);
  const deltas = b.scope('deltas');
  return {
    out: outProjection(b, merged, w),
    keyDelta: transpose(deltas.scope('key'), key, [0, 2, 1, 3]),
    valueDelta: transpose(deltas.scope('value'), value, [0, 2, 1, 3]),
  };
}

/**
 * Additive mask [S, P+S]: new row i (absolute position P+i) sees columns 0..P+i.
 *
 *   Range(0,S)──Add(P)──Unsqueeze(1)──▶ rows [S,1]
 *   Range(0,P+S)──Unsqueeze(0)──────────▶ cols [1,P+S]
 *   Greater(cols, rows)──Where(min, 0)──▶ mask
 */
export function bufferCausalMask(b: GraphBuilder, newRows: string, pastLength: string): string {
  const scalar = (x: string, name: string): string => b.op('Squeeze', [x, b.constInt64([0])], { name });
  const s = scalar(newRows, 'SqueezeNew');
  const p = scalar(pastLength, 'SqueezePast');
  const zero = b.constInt64(0);
  const one = b.constInt64(1);
  const rowIdx = b.op('Add', [b.op('Range', [zero, s, one], { name: 'RangeRows' }), p]);
  const colIdx = b.op('Range', [zero, b.op('Add', [p, s], { name: 'TotalRows' }), one], { name: 'RangeCols' });
  const rows = b.op('Unsqueeze', [rowIdx, b.constInt64([1])]);
  const cols = b.op('Unsqueeze', [colIdx, b.constInt64([0])]);
  const future = b.op('Greater', [cols, rows]);
  return b.op('Where', [future, b.constFloat(MASK_MIN), b.constFloat(0)]);
}
