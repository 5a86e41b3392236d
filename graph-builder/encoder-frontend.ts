/**
 * The encoder's front end as graph ops: mel -> 100-frame chunks -> 3x (Conv2d + GELU)
 * -> conv_out -> + sinusoid positions, i.e. everything before the valid-token selection
 * (official Qwen3ASRAudioEncoder.forward up to `padded_embed + positional_embedding`).
 *
 * Chunking follows pad_sequence exactly: with T > chunkFrames the mel is zero-padded to
 * a multiple of chunkFrames; with T <= chunkFrames the single chunk keeps its own length
 * T (pad_sequence pads nothing). Both cases are one formula on the dynamic T:
 * width = min(T, chunkFrames), chunks = ceil(T / chunkFrames), pad = chunks*width - T.
 * The padding matters beyond the zeros themselves: from the second convolution on, the
 * frames after a short tail see GELU(bias) activations of the zero frames, not zeros.
 */
import type { ModelDims } from '../checkpoint/config.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import type { GraphBuilder } from './graph-builder.js';
import { convStackLength } from './encoder-lengths.js';
import { sinusoidTable } from './encoder-positions.js';
import { gelu, linear, transpose } from './layers.js';
import { matmulWeight, plainWeight } from './weights.js';

export const AUDIO_TOWER = 'thinker.audio_tower';

/**
 * Runtime sizes read off the mel input once and shared by the later stages.
 * All are 1-element int64 tensors ([1]).
 */
export interface MelSizes {
  /** Batch size B (every item has the same T; the official encoder runs items one by one). */
  batch: string;
  /** Mel frames T. */
  frames: string;
}

/**
 *   mel ──Shape[0:1]──▶ batch
 *   mel ──Shape[2:3]──▶ frames
 */
export function melSizes(b: GraphBuilder, mel: string): MelSizes {
  return {
    batch: b.op('Shape', [mel], { attrs: { start: 0, end: 1 }, name: 'ShapeBatch' }),
    frames: b.op('Shape', [mel], { attrs: { start: 2, end: 3 }, name: 'ShapeFrames' }),
  };
}

/**
 * mel [B, bins, T] -> conv input [B*chunks, 1, bins, width] (chunk-major within each item).
 *
 *   T ──Add(c-1)──Div(c)──▶ chunks          T ──Min(c)──▶ width
 *   chunks·width − T ──▶ pad ──Concat([0,0,0,0,0], pad)──▶ pads
 *   mel ──Pad(pads, zeros at the end of time)──Reshape([0,bins,-1,width])──▶ [B,bins,chunks,width]
 *       ──Transpose(0,2,1,3)──Reshape([-1,1,bins,width])──▶ [B*chunks,1,bins,width]
 */
export function chunkMel(b: GraphBuilder, mel: string, sizes: MelSizes, dims: ModelDims): string {
  const c = dims.audio.chunkFrames;
  const bins = dims.audio.numMelBins;
  const chunkLen = b.constInt64([c]);
  const chunks = b.op('Div', [b.op('Add', [sizes.frames, b.constInt64([c - 1])]), chunkLen], { name: 'ChunkCount' });
  const width = b.op('Min', [sizes.frames, chunkLen], { name: 'ChunkWidth' });
  const pad = b.op('Sub', [b.op('Mul', [chunks, width]), sizes.frames], { name: 'PadFrames' });
  const pads = b.op('Concat', [b.constInt64([0, 0, 0, 0, 0]), pad], { attrs: { axis: 0 }, name: 'Pads' });
  const padded = b.op('Pad', [mel, pads]);
  const split = b.op('Reshape', [padded, b.op('Concat', [b.constInt64([0, bins, -1]), width], { attrs: { axis: 0 } })]);
  const chunkMajor = transpose(b, split, [0, 2, 1, 3]);
  const convShape = b.op('Concat', [b.constInt64([-1, 1, bins]), width], { attrs: { axis: 0 } });
  return b.op('Reshape', [chunkMajor, convShape]);
}

/**
 * One `conv2dN` stage: Conv2d(3x3, stride 2, pad 1) with bias, then exact GELU.
 *
 *   x ──Conv(W, bias)──GELU──▶ y
 */
export async function convGelu(b: GraphBuilder, src: TensorSource, x: string, name: string): Promise<string> {
  const w = await plainWeight(b, src, `${AUDIO_TOWER}.${name}.weight`);
  const bias = await plainWeight(b, src, `${AUDIO_TOWER}.${name}.bias`);
  const y = b.op('Conv', [x, w, bias], {
    attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1 },
  });
  return gelu(b.scope('act'), y);
}

/**
 * Conv features [B*chunks, C, F, t] -> tokens [B, chunks*t, d] with positions 0..t-1 added in
 * every chunk (the official permute(0,3,1,2).view(b, t, C*F) -> conv_out -> + table[:t]).
 *
 *   x ──convOut──▶ [B*chunks,t,d] ──Add(table[0:t])──Reshape(B ++ [-1,d])──▶ [B, chunks*t, d]
 *   table [tokensPerChunk, d] ──Slice(0 : t)──┘  (t = Shape(x)[3])
 */
export async function convOutWithPositions(
  b: GraphBuilder, src: TensorSource, x: string, sizes: MelSizes, dims: ModelDims,
): Promise<string> {
  const a = dims.audio;
  const projected = await convOut(b, src, x, dims);
  const pos = b.scope('positions');
  const table = chunkPositionTable(pos, dims);
  const t = pos.op('Shape', [x], { attrs: { start: 3, end: 4 } });
  const used = pos.op('Slice', [table, pos.constInt64([0]), t, pos.constInt64([0])]);
  const withPos = pos.op('Add', [projected, used]);

  const merged = pos.op('Concat', [sizes.batch, pos.constInt64([-1, a.dModel])], { attrs: { axis: 0 } });
  return pos.op('Reshape', [withPos, merged], { name: 'MergeChunks' });
}

/**
 * Conv features [B*chunks, C, F, t] -> conv_out tokens [B*chunks, t, d], no positions.
 *
 *   x ──Transpose(0,3,1,2)──Reshape([0,0,C*F])──conv_out MatMul──▶ y
 */
export async function convOut(b: GraphBuilder, src: TensorSource, x: string, dims: ModelDims): Promise<string> {
  const a = dims.audio;
  const features = a.downsampleHidden * a.freqAfterConv;
  const proj = b.scope('conv_out');
  const tokens = transpose(proj, x, [0, 3, 1, 2]);
  const flat = proj.op('Reshape', [tokens, proj.constInt64([0, 0, features])]);
  return linear(proj, flat, await matmulWeight(proj, src, `${AUDIO_TOWER}.conv_out.weight`));
}

/** The sinusoid rows of one chunk's tokens, [tokensPerChunk, d] (13 rows for 100-frame chunks). */
export function chunkPositionTable(b: GraphBuilder, dims: ModelDims): string {
  const rows = convStackLength(dims.audio.chunkFrames);
  return b.constTensor('float32', [rows, dims.audio.dModel], sinusoidTable(rows, dims.audio.dModel));
}
