/**
 * Decoder self-attention over a full-size cache buffer (the sherpa-onnx layout's decoder.onnx,
 * shared/SHERPA-ONNX.md): the caller keeps one zero-filled buffer per layer for keys and one for
 * values, [1, T_max, kv, D], passes them whole on every call and copies the returned deltas into
 * rows cache_position[0] .. cache_position[0]+S-1 itself. So the graph reads only rows 0..P-1 of
 * the buffers (P = cache_position[0]; the rows from P on are zeros or stale), attends causally
 * within the S new rows, and returns the new rows alone in the buffer's [1, S, kv, D] layout.
 */
import type { GraphBuilder } from './graph-builder.js';
import { INT64_END } from './graph-builder.js';
import { outProjection, projectQkv, type DecoderAttentionShape, type DecoderAttentionWeights } from './attention.js';
import { reshape, transpose } from './layers.js';

/** torch.finfo(float32).min: the causal mask value torch uses (softmax gives exactly 0). */
const MASK_MIN = -3.4028234663852886e38;

export interface BufferAttentionContext {
  /** RoPE tables [1, 1, S, D] for the absolute positions cache_position. */
  cos: string; sin: string;
  /** Additive causal mask over the new rows, [G*S, S] (newRowsMask). */
  mask: string;
  /** P as a [1] int64 tensor. */
  pastLength: string;
  /** This layer's key / value buffers [1, T_max, kv, D]. */
  keyBuffer: string; valueBuffer: string;
}

/**
 * Returns the attention output [1, S, hidden] and this call's key / value rows [1, S, kv, D]
 * (keys after q/k RMSNorm and RoPE, values raw). The G = heads / kv query heads sharing a KV head
 * are the G*S rows of one MatMul against that head's keys, so the buffers' rows are copied once
 * each (Slice + Transpose) and never repeated per query head or joined to the new rows (the
 * split layout's cached-attention.ts does the same for one new row).
 *
 *   x ──projectQkv──▶ q [1,h,S,D] ──Mul(1/√D)──Reshape[0,kv,G*S,D]──▶ qg;  key, value [1,kv,S,D]
 *   key_buffer ──Slice(0:P, axis 1)──Transpose(0,2,3,1)──▶ [1,kv,D,P]  ──MatMul(qg)──▶ past scores [1,kv,G*S,P]
 *   key ──Transpose(0,1,3,2)──MatMul(qg)──Add(mask [G*S,S])──────────────▶ new scores  [1,kv,G*S,S]
 *   Concat(past, new)──Softmax──┬─Slice(0:P)──MatMul(value_buffer rows 0:P as [1,kv,P,D])──┐
 *                               └─Slice(P:)───MatMul(value)──────────────────────────────Add──▶ [1,kv,G*S,D]
 *     ──Reshape[0,kv,G,S,D]──Transpose(0,3,1,2,4)──Reshape[0,0,h*D]──o_proj──▶ out
 *   key ──Transpose(0,2,1,3)──▶ key_delta [1,S,kv,D]        value ──Transpose──▶ value_delta
 */
export function bufferAttention(
  b: GraphBuilder, x: string, w: DecoderAttentionWeights, shape: DecoderAttentionShape, ctx: BufferAttentionContext,
): { out: string; keyDelta: string; valueDelta: string } {
  const { heads, kvHeads, headDim } = shape;
  const groups = heads / kvHeads;
  const { q, key, value } = projectQkv(b, x, w, shape, ctx.cos, ctx.sin);
  const cache = b.scope('cache');
  const zero = cache.constInt64([0]);
  const axis1 = cache.constInt64([1]);
  const pastRows = (buffer: string, name: string, perm: number[]): string => transpose(
    cache.scope(name),
    cache.op('Slice', [buffer, zero, ctx.pastLength, axis1], { name: `Slice${name}` }),
    perm,
  );
  const pastKeysT = pastRows(ctx.keyBuffer, 'Keys', [0, 2, 3, 1]);
  const pastValues = pastRows(ctx.valueBuffer, 'Values', [0, 2, 1, 3]);

  const sdpa = b.scope('sdpa');
  const qg = reshape(sdpa, sdpa.op('Mul', [q, sdpa.constFloat(1 / Math.sqrt(headDim))], { name: 'Scale' }), [0, kvHeads, -1, headDim]);
  const scorePast = sdpa.op('MatMul', [qg, pastKeysT], { name: 'MatMulPastKey' });
  const scoreNew = sdpa.op('Add', [sdpa.op('MatMul', [qg, transpose(sdpa, key, [0, 1, 3, 2])], { name: 'MatMulNewKey' }), ctx.mask]);
  const probs = sdpa.op('Softmax', [sdpa.op('Concat', [scorePast, scoreNew], { attrs: { axis: -1 } })], { attrs: { axis: -1 } });
  const last = sdpa.constInt64([-1]);
  const probsPast = sdpa.op('Slice', [probs, sdpa.constInt64([0]), ctx.pastLength, last], { name: 'SlicePast' });
  const probsNew = sdpa.op('Slice', [probs, ctx.pastLength, sdpa.constInt64([INT64_END]), last], { name: 'SliceNew' });
  const mixed = sdpa.op('Add', [
    sdpa.op('MatMul', [probsPast, pastValues], { name: 'MatMulPastValue' }),
    sdpa.op('MatMul', [probsNew, value], { name: 'MatMulNewValue' }),
  ]);
  const perHead = transpose(sdpa, reshape(sdpa, mixed, [0, kvHeads, groups, -1, headDim]), [0, 3, 1, 2, 4]);
  const merged = reshape(sdpa, perHead, [0, 0, heads * headDim]);
  const deltas = b.scope('deltas');
  return {
    out: outProjection(b, merged, w),
    keyDelta: transpose(deltas.scope('key'), key, [0, 2, 1, 3]),
    valueDelta: transpose(deltas.scope('value'), value, [0, 2, 1, 3]),
  };
}

/**
 * Additive causal mask of the new rows for the grouped scores, [G*S, S]: row g*S + i sees new
 * columns 0..i (every past row is visible to every new row).
 *
 *   Range(0,S)──Unsqueeze(1)──▶ rows [S,1];  Range(0,S)──Unsqueeze(0)──▶ cols [1,S]
 *   Greater(cols, rows)──Where(min, 0)──Tile([G,1])──▶ mask
 */
export function newRowsMask(b: GraphBuilder, newRows: string, groups: number): string {
  const s = b.op('Squeeze', [newRows, b.constInt64([0])], { name: 'SqueezeNew' });
  const idx = b.op('Range', [b.constInt64(0), s, b.constInt64(1)]);
  const rows = b.op('Unsqueeze', [idx, b.constInt64([1])]);
  const cols = b.op('Unsqueeze', [idx, b.constInt64([0])]);
  const causal = b.op('Where', [b.op('Greater', [cols, rows]), b.constFloat(MASK_MIN), b.constFloat(0)]);
  return b.op('Tile', [causal, b.constInt64([groups, 1])]);
}
