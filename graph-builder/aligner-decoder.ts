/**
 * aligner_decoder.onnx: the forced aligner's one causal pass (shared/ALIGNER.md, official
 * Qwen3ForcedAligner.align + Qwen3ASRThinkerForConditionalGeneration.forward), built op by op:
 *
 *   input_ids [1,S] i64, audio_features [1,N,H] f32
 *     -> timestamp_logits [1,K,C] f32, timestamp_classes [1,K] i64
 *
 * with K the number of `<timestamp>` tokens in input_ids (in order) and C = classify_num. The
 * graph embeds the ids (the untied embedding), writes row k of audio_features over the k-th
 * `<|audio_pad|>` (torch masked_scatter), runs the Qwen3 decoder layers with a causal mask at
 * positions 0..S-1 (the same make-functions as decoder_init), and applies the final norm and the
 * head only at the timestamp positions. No KV cache: nothing else is an output.
 *
 * Usage:
 *   const store = await WeightStore.create(join(dir, 'aligner_weights.data'));
 *   const b = await buildAlignerDecoder(src, dims, store);   // dims.aligner must be set
 *   await store.commit(); await writeModel(join(dir, 'aligner_decoder.onnx'), b);
 */
import type { ModelDims } from '../checkpoint/config.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { causalMask, decoderLayers, EMBED_TOKENS, LM_HEAD } from './decoder.js';
import { GraphBuilder } from './graph-builder.js';
import { linear } from './layers.js';
import { rmsNorm } from './rmsnorm.js';
import { rotaryCosSin } from './rotary.js';
import type { WeightStore } from './weight-store.js';
import { matmulWeight, plainWeight, rowStreamedWeight } from './weights.js';

/** Graph input / output names (the aligner model directory's interface). */
export const ALIGNER_INPUTS = { inputIds: 'input_ids', audio: 'audio_features' } as const;
export const ALIGNER_OUTPUTS = { logits: 'timestamp_logits', classes: 'timestamp_classes' } as const;

/** Tensors the aligner decoder stores: the layers, embed_tokens, the final norm, the head. */
export function alignerDecoderTensorCount(dims: ModelDims): number {
  return dims.text.layers * 11 + 3;
}

/**
 * The whole graph; weights go to `store` in build order (deterministic bytes).
 *
 *   input_ids, audio_features ──embedWithScatteredAudio──▶ embeds [1,S,H]
 *   input_ids ──sequencePositions──rotaryCosSin──▶ cos, sin;   embeds ──causalMask──▶ mask
 *   embeds ──decoderLayers (decoder.ts, standard-op attention)──▶ hidden [1,S,H]
 *   hidden ──timestampRows(input_ids == <timestamp>)──timestampHead──▶ timestamp_logits [1,K,C]
 *   timestamp_logits ──ArgMax(-1)──▶ timestamp_classes [1,K]
 */
export async function buildAlignerDecoder(src: TensorSource, dims: ModelDims, store: WeightStore): Promise<GraphBuilder> {
  const aligner = dims.aligner;
  if (!aligner) throw new Error('buildAlignerDecoder: the checkpoint is not a forced aligner');
  const t = dims.text;
  const b = new GraphBuilder('aligner_decoder', { weights: store });
  const inputIds = b.input(ALIGNER_INPUTS.inputIds, 'int64', [1, 'seq_len']);
  const audio = b.input(ALIGNER_INPUTS.audio, 'float32', [1, 'audio_len', t.hidden]);

  const embeds = await embedWithScatteredAudio(b, src, inputIds, audio, dims.tokens.audio);
  const positionIds = sequencePositions(b.scope('/model/positions'), inputIds);
  const { cos, sin } = rotaryCosSin(b.scope('/model/rotary_emb'), positionIds, t.headDim, t.ropeTheta);
  const { hidden } = await decoderLayers(b, src, dims, embeds, { attention: { kind: 'onnx', cos, sin, mask: causalMask(b, embeds) } });

  const atStamps = timestampRows(b.scope('/model/timestamp_positions'), hidden, inputIds, aligner.timestampTokenId);
  const logits = await timestampHead(b, src, dims, atStamps);
  const classes = b.scope('/timestamp_classes').op('ArgMax', [logits], { attrs: { axis: -1, keepdims: 0 } });
  b.output(ALIGNER_OUTPUTS.logits, 'float32', [1, 'timestamps', aligner.classifyNum], logits);
  b.output(ALIGNER_OUTPUTS.classes, 'int64', [1, 'timestamps'], classes);
  return b;
}

/**
 * Token embedding with the audio rows scattered into the placeholders: the k-th `<|audio_pad|>`
 * (k counted from 0 along the sequence) takes row k of audio_features, like torch's masked_scatter.
 * A zero row appended to the audio keeps every gather index valid (a pad past the N-th, or a
 * batch with no audio, reads zeros instead of failing); non-pad positions keep their embedding.
 *
 *   input_ids ──Gather(embed_tokens)─────────────────────────────────────────────▶ E [1,S,H]
 *   input_ids ──Equal(pad)──▶ isPad ──Cast(i64)──CumSum(axis 1)──Sub(1)──Clip(0, N)──▶ k [1,S]
 *   audio_features ──Squeeze(0)──Concat(zero row)──▶ rows [N+1,H] ──Gather(k)──▶ A [1,S,H]
 *   Where(Unsqueeze(isPad, -1), A, E) ──▶ embeds [1,S,H]
 */
async function embedWithScatteredAudio(
  b: GraphBuilder, src: TensorSource, inputIds: string, audio: string, padId: number,
): Promise<string> {
  const eb = b.scope('/model/embed_tokens');
  const table = await rowStreamedWeight(eb, src, EMBED_TOKENS);
  const embeds = eb.op('Gather', [table, inputIds], { attrs: { axis: 0 } });

  const ab = b.scope('/model/audio_scatter');
  const isPad = ab.op('Equal', [inputIds, ab.constInt64(padId)]);
  const ordinal = ab.op('CumSum', [ab.op('Cast', [isPad], { attrs: { to: 7 /* INT64 */ } }), ab.constInt64(1)]);
  const rows = ab.op('Squeeze', [audio, ab.constInt64([0])]);
  const count = ab.op('Squeeze', [ab.op('Shape', [rows], { attrs: { start: 0, end: 1 } }), ab.constInt64([0])]);
  const padded = ab.op('Concat', [rows, zeroRow(ab.scope('zero_row'), rows)], { attrs: { axis: 0 } });
  const index = ab.op('Clip', [ab.op('Sub', [ordinal, ab.constInt64(1)]), ab.constInt64(0), count]);
  const scattered = ab.op('Gather', [padded, index], { attrs: { axis: 0 } });
  return ab.op('Where', [ab.op('Unsqueeze', [isPad, ab.constInt64([-1])]), scattered, embeds]);
}

/**
 * One [1,H] row of zeros, H read from the audio rows (so it exists even when N = 0).
 *
 *   rows ──Shape[1:2]──Concat([1], ·)──▶ [1,H] ──Expand(0 [1,1])──▶ zeros [1,H]
 */
function zeroRow(b: GraphBuilder, rows: string): string {
  const width = b.op('Shape', [rows], { attrs: { start: 1, end: 2 } });
  const shape = b.op('Concat', [b.constInt64([1]), width], { attrs: { axis: 0 } });
  return b.op('Expand', [b.constFloat([0], [1, 1]), shape]);
}

/**
 * Positions 0..S-1 as position_ids [1,S] (plain 1-D RoPE: MRoPE with three equal rows).
 *
 *   input_ids ──Shape[1]──Squeeze──Range(0, S, 1)──Unsqueeze(0)──▶ position_ids
 */
function sequencePositions(b: GraphBuilder, inputIds: string): string {
  const seq = b.op('Squeeze', [b.op('Shape', [inputIds], { attrs: { start: 1, end: 2 } }), b.constInt64([0])]);
  return b.op('Unsqueeze', [b.op('Range', [b.constInt64(0), seq, b.constInt64(1)]), b.constInt64([0])]);
}

/**
 * The hidden rows at the `<timestamp>` positions, in sequence order.
 *
 *   input_ids[0] ──Equal(timestamp)──NonZero──Squeeze(0)──▶ idx [K]
 *   hidden [1,S,H] ──Gather(idx, axis 1)──▶ [1,K,H]
 */
function timestampRows(b: GraphBuilder, hidden: string, inputIds: string, timestampId: number): string {
  const ids = b.op('Squeeze', [inputIds, b.constInt64([0])]);
  const where = b.op('NonZero', [b.op('Equal', [ids, b.constInt64(timestampId)])]);
  const idx = b.op('Squeeze', [where, b.constInt64([0])]);
  return b.op('Gather', [hidden, idx], { attrs: { axis: 1 } });
}

/**
 * Final RMSNorm and the classify_num-class head on the timestamp rows only (the norm is per row,
 * so norming after the gather is the same arithmetic on K rows instead of S). The head is a
 * plain MatMul on its [H, C] transpose, the layout quantize's MatMulNBits pass reads.
 *
 *   rows [1,K,H] ──norm──MatMul(lm_head^T [H,C])──▶ timestamp_logits [1,K,C]
 */
async function timestampHead(b: GraphBuilder, src: TensorSource, dims: ModelDims, rows: string): Promise<string> {
  const nb = b.scope('/model/norm');
  const normW = await plainWeight(nb, src, 'thinker.model.norm.weight');
  const normed = rmsNorm(nb, rows, normW, dims.text.rmsEps);
  const head = b.scope('/lm_head');
  return linear(head, normed, await matmulWeight(head, src, LM_HEAD));
}
