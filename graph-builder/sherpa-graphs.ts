/**
 * The sherpa-onnx layout's three graphs (shared/SHERPA-ONNX.md), from the same make-functions as the
 * split layout's: one model implementation, other graph boundaries. Inputs and outputs are bound by
 * position in sherpa, so their order below is the contract.
 *
 *   conv_frontend.onnx: mel [1, T, 128] -> conv_output [1, 13*ceil(T/100), C]          (no positions)
 *   encoder.onnx:       conv_output [1, A, C], mask bool [1, A] -> audio_features [1, A, H]
 *                       (rows of padded tokens exactly zero)
 *   decoder.onnx:       input_ids [1,S], audio_features [1,A',H], attention_mask [1,S] (unused),
 *                       cache_position [S], past_key_i / past_value_i [1, T_max, kv, D] (i < L)
 *                       -> logits [1, S, V], key_delta_i / value_delta_i [1, S, kv, D]
 *
 * Usage:
 *   const b = await buildSherpaDecoderGraph(tensors, dims, store);  // store: decoder.data
 *   await store.commit(); await writeModel(join(dir, 'decoder.onnx'), b);
 */
import type { ModelDims } from '../checkpoint/config.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { GraphBuilder } from './graph-builder.js';
import { newRowsMask } from './buffer-attention.js';
import { decoderLayers, EMBED_TOKENS, lmHead } from './decoder.js';
import { chunkMel, chunkPositionTable, convGelu, convOut, melSizes } from './encoder-frontend.js';
import { convStackLength } from './encoder-lengths.js';
import { encoderTransformer } from './encoder.js';
import { transpose } from './layers.js';
import { rotaryCosSin } from './rotary.js';
import type { WeightStore } from './weight-store.js';
import { rowStreamedWeight } from './weights.js';

/** Graph input / output names (informative: sherpa binds by position). */
export const SHERPA_IO = {
  convFrontend: { input: 'mel', output: 'conv_output' },
  encoder: { inputs: ['conv_output', 'mask'], output: 'audio_features' },
  decoder: {
    inputs: ['input_ids', 'audio_features', 'attention_mask', 'cache_position'],
    pastKey: (l: number): string => `past_key_${l}`,
    pastValue: (l: number): string => `past_value_${l}`,
    logits: 'logits',
    keyDelta: (l: number): string => `key_delta_${l}`,
    valueDelta: (l: number): string => `value_delta_${l}`,
  },
} as const;

/**
 * conv_frontend: the official chunking (a lone chunk under 100 frames stays unpadded, see
 * encoder-frontend.ts), conv2d1..3 + GELU and conv_out per chunk; the tokens are then zero-padded
 * to 13 per chunk, the row count sherpa sizes its mask by.
 *
 *   mel [1,T,128] ──Transpose(0,2,1)──chunkMel──conv2d1/2/3 (+GELU)──conv_out──▶ [chunks,t,C]
 *     ──Reshape([1,-1,C])──Pad(rows to 13*ceil(T/100))──▶ conv_output [1,A,C]
 */
export async function buildConvFrontendGraph(src: TensorSource, dims: ModelDims, store: WeightStore): Promise<GraphBuilder> {
  const a = dims.audio;
  const b = new GraphBuilder('conv_frontend', { weights: store });
  const melTime = b.input(SHERPA_IO.convFrontend.input, 'float32', [1, 'mel_frames', a.numMelBins]);
  const root = b.scope('/audio');
  const mel = transpose(root.scope('input'), melTime, [0, 2, 1]);
  const sizes = melSizes(root.scope('input_shape'), mel);
  let x = chunkMel(root.scope('chunking'), mel, sizes, dims);
  for (const conv of ['conv2d1', 'conv2d2', 'conv2d3']) x = await convGelu(root.scope(conv), src, x, conv);
  const tokens = await convOut(root, src, x, dims);

  const out = root.scope('chunk_rows');
  const merged = out.op('Reshape', [tokens, out.constInt64([1, -1, a.dModel])], { name: 'MergeChunks' });
  const perChunk = convStackLength(a.chunkFrames);
  const chunks = out.op('Div', [out.op('Add', [sizes.frames, out.constInt64([a.chunkFrames - 1])]), out.constInt64([a.chunkFrames])], { name: 'ChunkCount' });
  const rows = out.op('Mul', [chunks, out.constInt64([perChunk])], { name: 'PaddedRows' });
  const have = out.op('Shape', [merged], { attrs: { start: 1, end: 2 } });
  const pads = out.op('Concat', [out.constInt64([0, 0, 0, 0]), out.op('Sub', [rows, have]), out.constInt64([0])], { attrs: { axis: 0 }, name: 'Pads' });
  const padded = out.op('Pad', [merged, pads]);
  b.output(SHERPA_IO.convFrontend.output, 'float32', [1, 'audio_tokens', a.dModel], padded);
  return b;
}

/**
 * encoder: the per-chunk positions, then the split layout's transformer on the mask's valid tokens
 * (the first N rows: sherpa's mask is N trues then falses), padded back to A rows with exact zeros.
 *
 *   x [1,A,C] ──Reshape([1,-1,13,C])──Add(table[13,C])──Reshape([1,-1,C])──▶ tokens
 *   mask ──Cast(int64)──ReduceSum──▶ N
 *   tokens, N ──encoderTransformer──▶ [1,N,H] ──Pad(rows to A, zeros)──▶ audio_features [1,A,H]
 */
export async function buildSherpaEncoderGraph(src: TensorSource, dims: ModelDims, store: WeightStore): Promise<GraphBuilder> {
  const a = dims.audio;
  const b = new GraphBuilder('encoder', { weights: store });
  const [convName, maskName] = SHERPA_IO.encoder.inputs;
  const x = b.input(convName, 'float32', [1, 'audio_tokens', a.dModel]);
  const mask = b.input(maskName, 'bool', [1, 'audio_tokens']);
  const root = b.scope('/audio');

  const pos = root.scope('positions');
  const perChunk = convStackLength(a.chunkFrames);
  const byChunk = pos.op('Reshape', [x, pos.constInt64([1, -1, perChunk, a.dModel])], { name: 'SplitChunks' });
  const withPos = pos.op('Add', [byChunk, chunkPositionTable(pos, dims)]);
  const tokens = pos.op('Reshape', [withPos, pos.constInt64([1, -1, a.dModel])], { name: 'MergeChunks' });

  const valid = root.scope('valid_tokens');
  const count = valid.op('ReduceSum', [valid.op('Cast', [mask], { attrs: { to: 7 } }), valid.constInt64([1])], { attrs: { keepdims: 0 } });
  const batch = root.scope('input_shape').op('Shape', [x], { attrs: { start: 0, end: 1 }, name: 'ShapeBatch' });
  const features = await encoderTransformer(root, src, dims, tokens, count, batch);

  const out = root.scope('padded_rows');
  const rows = out.op('Shape', [x], { attrs: { start: 1, end: 2 } });
  const pads = out.op('Concat', [out.constInt64([0, 0, 0, 0]), out.op('Sub', [rows, count]), out.constInt64([0])], { attrs: { axis: 0 }, name: 'Pads' });
  b.output(SHERPA_IO.encoder.output, 'float32', [1, 'audio_tokens', a.outputDim], out.op('Pad', [features, pads]));
  return b;
}

/**
 * decoder: one graph for the prompt and for every step.
 *
 *   input_ids ──embedWithAudioPads──▶ embeds [1,S,H]
 *   cache_position ──Unsqueeze(0)──RoPE tables;  cache_position[0:1] ──▶ P;  S ──newRowsMask──▶ mask
 *   embeds ──decoderLayers(buffer attention over past_key_i / past_value_i rows 0..P-1)──▶ h, deltas
 *   h ──norm──lm_head (every position)──▶ logits [1,S,V]
 */
export async function buildSherpaDecoderGraph(src: TensorSource, dims: ModelDims, store: WeightStore): Promise<GraphBuilder> {
  const t = dims.text;
  const io = SHERPA_IO.decoder;
  const b = new GraphBuilder('decoder', { weights: store });
  const inputIds = b.input(io.inputs[0], 'int64', [1, 'seq_len']);
  const audio = b.input(io.inputs[1], 'float32', [1, 'audio_len', t.hidden]);
  b.input(io.inputs[2], 'int64', [1, 'seq_len']); // all ones in sherpa; batch 1 needs no padding mask
  const cachePosition = b.input(io.inputs[3], 'int64', ['seq_len']);
  const cacheDims = [1, 'max_total_len', t.kvHeads, t.headDim];
  const keyBuffers: string[] = [];
  const valueBuffers: string[] = [];
  for (let l = 0; l < t.layers; l++) {
    keyBuffers.push(b.input(io.pastKey(l), 'float32', cacheDims));
    valueBuffers.push(b.input(io.pastValue(l), 'float32', cacheDims));
  }

  const embeds = await embedWithAudioPads(b, src, dims, inputIds, audio);
  const posScope = b.scope('/model/positions');
  const positionIds = posScope.op('Unsqueeze', [cachePosition, posScope.constInt64([0])]);
  const pastLength = posScope.op('Slice', [cachePosition, posScope.constInt64([0]), posScope.constInt64([1]), posScope.constInt64([0])], { name: 'PastLength' });
  const newRows = posScope.op('Shape', [inputIds], { attrs: { start: 1, end: 2 }, name: 'NewRows' });
  const { cos, sin } = rotaryCosSin(b.scope('/model/rotary_emb'), positionIds, t.headDim, t.ropeTheta);
  const mask = newRowsMask(b.scope('/model/attn_mask'), newRows, t.heads / t.kvHeads);
  const { hidden, keys, values } = await decoderLayers(b, src, dims, embeds, {
    attention: { kind: 'buffer', cos, sin, mask, pastLength, keyBuffers, valueBuffers },
  });
  b.output(io.logits, 'float32', [1, 'seq_len', t.vocab], await lmHead(b, src, dims, hidden));
  const deltaDims = [1, 'seq_len', t.kvHeads, t.headDim];
  for (let l = 0; l < t.layers; l++) {
    b.output(io.keyDelta(l), 'float32', deltaDims, keys[l]);
    b.output(io.valueDelta(l), 'float32', deltaDims, values[l]);
  }
  return b;
}

/**
 * Token embedding with the k-th `<|audio_pad|>` position taking row k of the audio features.
 *
 *   input_ids ──Gather(embed_tokens)──▶ E [1,S,H]
 *   input_ids ──Equal(pad id)──▶ isPad ──Cast──CumSum(axis 1)──Sub(1)──Max(0)──▶ k [1,S]
 *   audio [1,A,H] ──Squeeze(0)──Gather(k)──▶ rows [1,S,H]
 *   Where(Unsqueeze(isPad, 2), rows, E)──▶ embeds
 */
async function embedWithAudioPads(b: GraphBuilder, src: TensorSource, dims: ModelDims, inputIds: string, audio: string): Promise<string> {
  const eb = b.scope('/model/embed_tokens');
  const table = await rowStreamedWeight(eb, src, EMBED_TOKENS);
  const embeds = eb.op('Gather', [table, inputIds], { attrs: { axis: 0 } });
  const ab = b.scope('/model/audio_merge');
  const isPad = ab.op('Equal', [inputIds, ab.constInt64(dims.tokens.audio)]);
  const running = ab.op('CumSum', [ab.op('Cast', [isPad], { attrs: { to: 7 } }), ab.constInt64(1)]);
  const index = ab.op('Max', [ab.op('Sub', [running, ab.constInt64(1)]), ab.constInt64(0)]);
  const rows = ab.op('Gather', [ab.op('Squeeze', [audio, ab.constInt64([0])]), index], { attrs: { axis: 0 } });
  return ab.op('Where', [ab.op('Unsqueeze', [isPad, ab.constInt64([2])]), rows, embeds]);
}
