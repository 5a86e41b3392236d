/**
 * The two decoder graphs of the contract, built op by op from the checkpoint:
 *
 *   decoder_init.onnx: input_ids [B,S] i64, position_ids [B,S] i64, audio_features [B,A,H],
 *                      audio_offset [1] i64 -> logits [B,1,V] ([B,S,V] with allLogits),
 *                      present_keys / present_values [L,B,KV,S,D]
 *   decoder_step.onnx: input_embeds [B,1,H], position_ids [B,1] i64, past_keys / past_values
 *                      [L,B,KV,P,D] -> logits [B,1,V], present_keys / present_values [L,B,KV,P+1,D]
 *
 * Both read one shared WeightStore (decoder_weights.data): build init first (it stores every
 * weight), then step (it finds them all stored and only references them). The lm_head, when
 * tied, is the embedding initializer itself (Gemm transB=1), never a second copy.
 *
 * Attention (`DecoderGraphOptions.attention`): 'onnx' (default) builds it from standard ONNX ops
 * (attention.ts); 'fused' uses onnxruntime's com.microsoft RotaryEmbedding + GroupQueryAttention
 * (fused-attention.ts) in both graphs. Same inputs, outputs, names, shapes and dtypes either way.
 *
 * Usage:
 *   const store = await WeightStore.create(join(dir, 'decoder_weights.data'));
 *   const init = await buildDecoderInit(src, dims, store, { allLogits: false });   // + attention: 'fused'
 *   const step = await buildDecoderStep(src, dims, store);                         // { attention: 'fused' }
 *   await store.commit(); await writeModel(join(dir, 'decoder_init.onnx'), init); ...
 */
import type { ModelDims } from '../checkpoint/config.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { floatAttrValue, GraphBuilder, INT64_END } from './graph-builder.js';
import { decoderSelfAttention, type DecoderAttentionWeights } from './attention.js';
import { bufferAttention } from './buffer-attention.js';
import { fusedDecoderAttention, prefillGqaLengths, stepGqaLengths, type GqaLengths } from './fused-attention.js';
import { reshape } from './layers.js';
import { swiGluMlp, type SwiGluWeights } from './mlp.js';
import { rmsNorm } from './rmsnorm.js';
import { rotaryCache, rotaryCosSin, type RotaryCache } from './rotary.js';
import type { WeightStore } from './weight-store.js';
import { matmulWeight, plainWeight, rowStreamedWeight } from './weights.js';

const M = 'thinker.model';
export const EMBED_TOKENS = `${M}.embed_tokens.weight`;
export const LM_HEAD = 'thinker.lm_head.weight';

/** torch.finfo(float32).min: the causal mask value torch uses (softmax gives exactly 0). */
const MASK_MIN = -3.4028234663852886e38;

/** How the decoder graphs compute self-attention (see the header comment). */
export type DecoderAttention = 'onnx' | 'fused';
export const DECODER_ATTENTIONS: readonly DecoderAttention[] = ['onnx', 'fused'];

export interface DecoderGraphOptions {
  /** Default 'onnx'. */
  attention?: DecoderAttention;
}

export interface DecoderInitOptions extends DecoderGraphOptions {
  /** Logits for every position ([B,S,V]) instead of the last one only ([B,1,V]). */
  allLogits?: boolean;
}

/** What every layer's attention reads besides its input: standard-op RoPE tables or the fused ops' inputs. */
export type AttentionInputs =
  | { kind: 'onnx'; cos: string; sin: string; mask?: string }
  | { kind: 'fused'; rotary: RotaryCache; lengths: GqaLengths }
  /** Full-size per-layer cache buffers, read up to pastLength (sherpa-onnx layout: buffer-attention.ts). */
  | { kind: 'buffer'; cos: string; sin: string; mask: string; pastLength: string; keyBuffers: string[]; valueBuffers: string[] };

interface LayerWeights { inputNorm: string; postNorm: string; attn: DecoderAttentionWeights; mlp: SwiGluWeights }

/** Number of distinct tensors the decoder stores (for progress totals). */
export function decoderTensorCount(dims: ModelDims, src: TensorSource): number {
  const perLayer = 11 + ['q', 'k', 'v', 'o'].filter((p) => src.has(`${M}.layers.0.self_attn.${p}_proj.bias`)).length;
  return dims.text.layers * perLayer + 2 + (dims.text.tied ? 0 : 1);
}

async function optionalBias(b: GraphBuilder, src: TensorSource, name: string): Promise<string | undefined> {
  return src.has(name) ? plainWeight(b, src, name) : undefined;
}

async function layerWeights(b: GraphBuilder, src: TensorSource, l: number): Promise<LayerWeights> {
  const p = `${M}.layers.${l}`;
  const a = `${p}.self_attn`;
  return {
    inputNorm: await plainWeight(b, src, `${p}.input_layernorm.weight`),
    attn: {
      q: await matmulWeight(b, src, `${a}.q_proj.weight`),
      qBias: await optionalBias(b, src, `${a}.q_proj.bias`),
      k: await matmulWeight(b, src, `${a}.k_proj.weight`),
      kBias: await optionalBias(b, src, `${a}.k_proj.bias`),
      v: await matmulWeight(b, src, `${a}.v_proj.weight`),
      vBias: await optionalBias(b, src, `${a}.v_proj.bias`),
      o: await matmulWeight(b, src, `${a}.o_proj.weight`),
      oBias: await optionalBias(b, src, `${a}.o_proj.bias`),
      qNorm: await plainWeight(b, src, `${a}.q_norm.weight`),
      kNorm: await plainWeight(b, src, `${a}.k_norm.weight`),
    },
    postNorm: await plainWeight(b, src, `${p}.post_attention_layernorm.weight`),
    mlp: {
      gate: await matmulWeight(b, src, `${p}.mlp.gate_proj.weight`),
      up: await matmulWeight(b, src, `${p}.mlp.up_proj.weight`),
      down: await matmulWeight(b, src, `${p}.mlp.down_proj.weight`),
    },
  };
}

/**
 * The decoder layers shared by both graphs; returns the final hidden state and per-layer
 * keys/values: the prompt's (decoder_init), or in decoder_step the new rows only (standard-op
 * attention) or the past plus the new row (GroupQueryAttention's present); with cache buffers
 * (the sherpa-onnx decoder) this call's rows in the buffers' [1, S, kv, D] layout.
 *
 *   x ──input_layernorm──attn──Add(x)──▶ h ──post_attention_layernorm──mlp──Add(h)──▶ next x
 */
export async function decoderLayers(
  b: GraphBuilder, src: TensorSource, dims: ModelDims, x0: string,
  ctx: { attention: AttentionInputs; pastKeys?: string; pastValues?: string },
): Promise<{ hidden: string; keys: string[]; values: string[] }> {
  const t = dims.text;
  let x = x0;
  const keys: string[] = [];
  const values: string[] = [];
  for (let l = 0; l < t.layers; l++) {
    const lb = b.scope(`/model/layers.${l}`);
    const w = await layerWeights(lb, src, l);
    let pastKey: string | undefined;
    let pastValue: string | undefined;
    if (ctx.pastKeys && ctx.pastValues) {
      const cache = lb.scope('kv_cache');
      const idx = cache.constInt64(l);
      pastKey = cache.op('Gather', [ctx.pastKeys, idx], { attrs: { axis: 0 }, name: 'GatherPastKey' });
      pastValue = cache.op('Gather', [ctx.pastValues, idx], { attrs: { axis: 0 }, name: 'GatherPastValue' });
    }
    const normed = rmsNorm(lb.scope('input_layernorm'), x, w.inputNorm, t.rmsEps);
    const shape = { heads: t.heads, kvHeads: t.kvHeads, headDim: t.headDim, rmsEps: t.rmsEps };
    const a = ctx.attention;
    let attn: { out: string; key: string; value: string };
    if (a.kind === 'onnx') {
      attn = decoderSelfAttention(lb.scope('attn'), normed, w.attn, shape, { cos: a.cos, sin: a.sin, mask: a.mask, pastKey, pastValue });
    } else if (a.kind === 'fused') {
      attn = fusedDecoderAttention(lb.scope('attn'), normed, w.attn, shape, { rotary: a.rotary, lengths: a.lengths, pastKey, pastValue });
    } else {
      const r = bufferAttention(lb.scope('attn'), normed, w.attn, shape, {
        cos: a.cos, sin: a.sin, mask: a.mask, pastLength: a.pastLength, keyBuffer: a.keyBuffers[l], valueBuffer: a.valueBuffers[l],
      });
      attn = { out: r.out, key: r.keyDelta, value: r.valueDelta };
    }
    const h = lb.scope('residual_attn').op('Add', [x, attn.out]);
    const post = rmsNorm(lb.scope('post_attention_layernorm'), h, w.postNorm, t.rmsEps);
    const mlp = swiGluMlp(lb.scope('mlp'), post, w.mlp);
    x = lb.scope('residual_mlp').op('Add', [h, mlp]);
    keys.push(attn.key);
    values.push(attn.value);
  }
  return { hidden: x, keys, values };
}

/**
 * Stacks per-layer caches [B,KV,T,D] into [L,B,KV,T,D].
 *
 *   k_0 ──Unsqueeze(0)──┐
 *   ...                 Concat(axis 0)──▶ stacked
 *   k_L ──Unsqueeze(0)──┘
 */
function stackLayers(b: GraphBuilder, parts: string[]): string {
  const axis0 = b.constInt64([0]);
  return b.op('Concat', parts.map((p) => b.op('Unsqueeze', [p, axis0])), { attrs: { axis: 0 } });
}

/**
 * Final norm + lm_head: logits [B, S', V] = norm(h) @ W^T with W the [V,H] embedding (tied)
 * or lm_head weight, via Gemm transB=1 on a [B*S', H] view (no transposed copy stored).
 *
 *   h ──norm──Reshape([-1,H])──Gemm(W, transB=1)──Reshape(Shape(h)[0:2] ++ [V])──▶ logits
 */
export async function lmHead(b: GraphBuilder, src: TensorSource, dims: ModelDims, hidden: string): Promise<string> {
  const t = dims.text;
  const normW = await plainWeight(b.scope('/model/norm'), src, `${M}.norm.weight`);
  const normed = rmsNorm(b.scope('/model/norm'), hidden, normW, t.rmsEps);
  const head = b.scope('/lm_head');
  const w = await rowStreamedWeight(head, src, t.tied ? EMBED_TOKENS : LM_HEAD);
  const flat = reshape(head, normed, [-1, t.hidden]);
  const logits2d = head.op('Gemm', [flat, w], { attrs: { transB: 1, alpha: floatAttrValue(1), beta: floatAttrValue(1) } });
  const lead = head.op('Shape', [normed], { attrs: { start: 0, end: 2 } });
  const outShape = head.op('Concat', [lead, head.constInt64([t.vocab])], { attrs: { axis: 0 } });
  return head.op('Reshape', [logits2d, outShape]);
}

/**
 * Token embedding with audio rows written over positions audio_offset .. audio_offset+A-1.
 *
 *   input_ids ──Gather(embed_tokens)──▶ E [B,S,H]
 *   E ──Slice(0 : off, axis 1)────────────────┐
 *   audio_features ────────────────────────Concat(axis 1)──▶ embeds [B,S,H]
 *   E ──Slice(off + A : end, axis 1)──────────┘
 */
async function embedWithAudio(b: GraphBuilder, src: TensorSource, inputIds: string, audio: string, offset: string): Promise<string> {
  const eb = b.scope('/model/embed_tokens');
  const table = await rowStreamedWeight(eb, src, EMBED_TOKENS);
  const embeds = eb.op('Gather', [table, inputIds], { attrs: { axis: 0 } });
  const ab = b.scope('/model/audio_merge');
  const axis1 = ab.constInt64([1]);
  const audioLen = ab.op('Shape', [audio], { attrs: { start: 1, end: 2 } });
  const end = ab.op('Add', [offset, audioLen]);
  const before = ab.op('Slice', [embeds, ab.constInt64([0]), offset, axis1], { name: 'SliceBefore' });
  const after = ab.op('Slice', [embeds, end, ab.constInt64([INT64_END]), axis1], { name: 'SliceAfter' });
  return ab.op('Concat', [before, audio, after], { attrs: { axis: 1 } });
}

/**
 * Additive causal mask [S, S]: 0 on and below the diagonal, float32 min above it.
 *
 *   Shape(x)[1]──Squeeze──Range(0,S,1)──┬─Unsqueeze(1)─▶ rows [S,1]
 *                                       └─Unsqueeze(0)─▶ cols [1,S]
 *   Greater(cols, rows)──Where(min, 0)──▶ mask
 */
export function causalMask(b: GraphBuilder, x: string): string {
  const m = b.scope('/model/attn_mask');
  const seq = m.op('Squeeze', [m.op('Shape', [x], { attrs: { start: 1, end: 2 } }), m.constInt64([0])]);
  const idx = m.op('Range', [m.constInt64(0), seq, m.constInt64(1)]);
  const rows = m.op('Unsqueeze', [idx, m.constInt64([1])]);
  const cols = m.op('Unsqueeze', [idx, m.constInt64([0])]);
  const future = m.op('Greater', [cols, rows]);
  return m.op('Where', [future, m.constFloat(MASK_MIN), m.constFloat(0)]);
}

function cacheDims(dims: ModelDims, seq: string): Array<number | string> {
  return [dims.text.layers, 'batch', dims.text.kvHeads, seq, dims.text.headDim];
}

export async function buildDecoderInit(
  src: TensorSource, dims: ModelDims, store: WeightStore, opts: DecoderInitOptions = {},
): Promise<GraphBuilder> {
  const t = dims.text;
  const b = new GraphBuilder('decoder_init', { weights: store });
  const inputIds = b.input('input_ids', 'int64', ['batch', 'seq_len']);
  const positionIds = b.input('position_ids', 'int64', ['batch', 'seq_len']);
  const audio = b.input('audio_features', 'float32', ['batch', 'audio_len', t.hidden]);
  const offset = b.input('audio_offset', 'int64', [1]);

  const embeds = await embedWithAudio(b, src, inputIds, audio, offset);
  let attention: AttentionInputs;
  if (opts.attention === 'fused') {
    // GroupQueryAttention is causal by itself: no mask.
    const rotary = rotaryCache(b.scope('/model/rotary_emb'), positionIds, t.headDim, t.ropeTheta);
    attention = { kind: 'fused', rotary, lengths: prefillGqaLengths(b.scope('/model/attn_lengths'), inputIds) };
  } else {
    const { cos, sin } = rotaryCosSin(b.scope('/model/rotary_emb'), positionIds, t.headDim, t.ropeTheta);
    attention = { kind: 'onnx', cos, sin, mask: causalMask(b, embeds) };
  }
  const { hidden, keys, values } = await decoderLayers(b, src, dims, embeds, { attention });
  const last = opts.allLogits
    ? hidden
    : b.scope('/model/last_position').op('Slice', [hidden, b.constInt64([-1]), b.constInt64([INT64_END]), b.constInt64([1])]);
  const logits = await lmHead(b, src, dims, last);
  b.output('logits', 'float32', ['batch', opts.allLogits ? 'seq_len' : 1, t.vocab], logits);
  b.output('present_keys', 'float32', cacheDims(dims, 'seq_len'), stackLayers(b.scope('/model/present_keys'), keys));
  b.output('present_values', 'float32', cacheDims(dims, 'seq_len'), stackLayers(b.scope('/model/present_values'), values));
  return b;
}

export async function buildDecoderStep(
  src: TensorSource, dims: ModelDims, store: WeightStore, opts: DecoderGraphOptions = {},
): Promise<GraphBuilder> {
  const t = dims.text;
  const b = new GraphBuilder('decoder_step', { weights: store });
  const embeds = b.input('input_embeds', 'float32', ['batch', 1, t.hidden]);
  const positionIds = b.input('position_ids', 'int64', ['batch', 1]);
  const pastKeys = b.input('past_keys', 'float32', cacheDims(dims, 'past_seq_len'));
  const pastValues = b.input('past_values', 'float32', cacheDims(dims, 'past_seq_len'));

  let attention: AttentionInputs;
  if (opts.attention === 'fused') {
    const rotary = rotaryCache(b.scope('/model/rotary_emb'), positionIds, t.headDim, t.ropeTheta);
    attention = { kind: 'fused', rotary, lengths: stepGqaLengths(b.scope('/model/attn_lengths'), pastKeys, embeds) };
  } else {
    const { cos, sin } = rotaryCosSin(b.scope('/model/rotary_emb'), positionIds, t.headDim, t.ropeTheta);
    // One query attends to every cached position and itself: no mask.
    attention = { kind: 'onnx', cos, sin };
  }
  const { hidden, keys, values } = await decoderLayers(b, src, dims, embeds, { attention, pastKeys, pastValues });
  const logits = await lmHead(b, src, dims, hidden);
  b.output('logits', 'float32', ['batch', 1, t.vocab], logits);
  // GroupQueryAttention returns each layer's whole present; the standard-op attention only the new rows.
  const present = (name: string, past: string, perLayer: string[]): string => (attention.kind === 'fused'
    ? stackLayers(b.scope(name), perLayer)
    : appendRows(b.scope(name), past, perLayer));
  b.output('present_keys', 'float32', cacheDims(dims, 'total_seq_len'), present('/model/present_keys', pastKeys, keys));
  b.output('present_values', 'float32', cacheDims(dims, 'total_seq_len'), present('/model/present_values', pastValues, values));
  return b;
}

/**
 * present = past ++ new rows along the sequence axis, in one pass over the cache: the layers' new
 * rows [B,KV,1,D] are stacked first (tiny), then joined to the whole stacked past.
 *
 *   new_0 ... new_L ──stackLayers──▶ [L,B,KV,1,D] ──┐
 *   past [L,B,KV,P,D] ──────────────────────────Concat(axis 3)──▶ present [L,B,KV,P+1,D]
 */
function appendRows(b: GraphBuilder, past: string, rows: string[]): string {
  return b.op('Concat', [past, stackLayers(b, rows)], { attrs: { axis: 3 } });
}
