/**
 * One new token attending to a layer's cached keys/values and to itself, in standard ONNX ops,
 * without building the layer's [past; new] tensors and without repeating KV heads (decoder_step
 * with `--attention onnx`, investigation entries 8 and 23).
 *
 * The G = heads / kvHeads query heads that share a KV head become the G rows of one MatMul
 * against that head's cached keys (query head h = kv * G + g, the torch repeat_kv order). Scores
 * over the past and over the new token are computed apart and joined (a tiny [B,KV,G,P+1]
 * tensor); the output is P_past·V_past + p_new·v_new. The cache is read once for the scores and
 * once for the output, where the [past; new] + repeat_kv form copied it three more times.
 */
import { INT64_END, type GraphBuilder } from './graph-builder.js';
import { reshape, transpose } from './layers.js';

export interface CachedAttentionShape { heads: number; kvHeads: number; headDim: number }

/**
 * q [B,H,1,D] (after RoPE), the new token's key/value [B,KV,1,D], the layer's cache [B,KV,P,D];
 * returns the attention output [B,1,H*D].
 *
 *   q ──Reshape[0,KV,G,D]──▶ qg
 *   qg ──MatMul(Transpose(past_k))──▶ [B,KV,G,P] ──┐
 *   qg ──MatMul(Transpose(k_new))───▶ [B,KV,G,1] ──Concat(-1)──Mul(1/√D)──Softmax(-1)──▶ p
 *   p ──Slice(:, -1)──MatMul(past_v)──┐
 *   p ──Slice(-1, :)──MatMul(v_new)───Add──Reshape[0,1,H*D]──▶ out
 */
export function cachedAttention(
  b: GraphBuilder, q: string, kNew: string, vNew: string, pastK: string, pastV: string, shape: CachedAttentionShape,
): string {
  const { heads, kvHeads, headDim } = shape;
  const qg = reshape(b, q, [0, kvHeads, heads / kvHeads, headDim]);
  const perm = [0, 1, 3, 2];
  const scorePast = b.op('MatMul', [qg, transpose(b, pastK, perm)], { name: 'MatMulPastKey' });
  const scoreNew = b.op('MatMul', [qg, transpose(b, kNew, perm)], { name: 'MatMulNewKey' });
  const scores = b.op('Concat', [scorePast, scoreNew], { attrs: { axis: -1 } });
  const probs = b.op('Softmax', [b.op('Mul', [scores, b.constFloat(1 / Math.sqrt(headDim))])], { attrs: { axis: -1 } });
  const last = b.constInt64([-1]);
  const probsPast = b.op('Slice', [probs, b.constInt64([0]), last, last], { name: 'SlicePast' });
  const probsNew = b.op('Slice', [probs, last, b.constInt64([INT64_END]), last], { name: 'SliceNew' });
  const out = b.op('Add', [
    b.op('MatMul', [probsPast, pastV], { name: 'MatMulPastValue' }),
    b.op('MatMul', [probsNew, vNew], { name: 'MatMulNewValue' }),
  ]);
  return reshape(b, out, [0, 1, heads * headDim]);
}
