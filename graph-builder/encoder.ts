/**
 * encoder.onnx: the Qwen3-ASR audio encoder built op by op from the checkpoint
 * (official Qwen3ASRAudioEncoder.forward, modeling_qwen3_asr.py), weights in
 * encoder_weights.data.
 *
 *   mel [B, bins, T] float32  ->  audio_features [B, N, output_dim] float32,
 *   N = 13*floor(T/100) + f(f(f(T mod 100))), f(t) = floor((t+1)/2)   (T >= 1)
 *
 * The official model runs one audio at a time; here a batch of B mels of the same length
 * gives each item exactly its own single-item result (consumers pass B = 1).
 *
 * Usage:
 *   const { files } = await buildEncoder({ tensors, dims, outputDir, progress });
 *   // or, for a graph in memory: const b = await buildEncoderGraph(tensors, dims, store);
 */
import { join } from 'node:path';
import type { ModelDims } from '../checkpoint/config.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { GraphBuilder } from './graph-builder.js';
import { AUDIO_TOWER, chunkMel, convGelu, convOutWithPositions, melSizes } from './encoder-frontend.js';
import { ENCODER_LAYER_TENSORS, encoderLayer, encoderLayerNorm, encoderLinear } from './encoder-layer.js';
import { attentionWindowTokens } from './encoder-lengths.js';
import { keepValidTokens, validTokenCount, windowLayout, windowMask } from './encoder-windows.js';
import { gelu } from './layers.js';
import { writeModel } from './model.js';
import { WeightStore } from './weight-store.js';
import { graphFileName, weightsFileName } from '../model-dir/files.js';

// File names are the model directory's (model-dir/files.ts).
export const ENCODER_FILE = graphFileName('encoder');
export const ENCODER_WEIGHTS_FILE = weightsFileName('encoder');

/** Graph input / output names and dynamic axes (the consumer contract). */
export const ENCODER_INPUT = 'mel';
export const ENCODER_OUTPUT = 'audio_features';

export interface BuildEncoderOptions {
  tensors: TensorSource;
  dims: ModelDims;
  /** Directory that receives encoder.onnx and encoder_weights.data. */
  outputDir: string;
  progress?: Progress;
}

/** Tensors the encoder stores: 3 convs (weight + bias), conv_out, the layers, ln_post, proj1, proj2. */
export function encoderTensorCount(dims: ModelDims): number {
  return 6 + 1 + dims.audio.layers * ENCODER_LAYER_TENSORS + 6;
}

/**
 * Writes encoder.onnx + encoder_weights.data into `outputDir` (each atomically; on failure
 * the data file's temp copy is removed). Returns the file names written.
 */
export async function buildEncoder(opts: BuildEncoderOptions): Promise<{ files: string[] }> {
  const progress = opts.progress ?? silentProgress;
  const total = encoderTensorCount(opts.dims);
  let done = 0;
  const store = await WeightStore.create(join(opts.outputDir, ENCODER_WEIGHTS_FILE), {
    onStored: () => { done += 1; progress.update('encoder weights', done, total); },
  });
  try {
    const graph = await buildEncoderGraph(opts.tensors, opts.dims, store);
    await store.commit();
    await writeModel(join(opts.outputDir, ENCODER_FILE), graph);
  } catch (err) {
    await store.abort();
    throw err;
  }
  progress.finish();
  return { files: [ENCODER_FILE, ENCODER_WEIGHTS_FILE] };
}

/**
 * The encoder graph; weights go to `store` in build order (deterministic bytes).
 *
 *   mel ──chunk (pad to 100-frame chunks)──conv2d1/2/3 (+GELU)──conv_out──+positions──▶ [B, chunks*13, d]
 *       ──keep the N valid tokens──▶ [B, N, d]
 *       ──layers.0..L-1 (attention inside windows of 104, key-padding mask)──▶ [B, N, d]
 *       ──ln_post──proj1──GELU──proj2──▶ audio_features [B, N, output_dim]
 */
export async function buildEncoderGraph(src: TensorSource, dims: ModelDims, store: WeightStore): Promise<GraphBuilder> {
  const a = dims.audio;
  const b = new GraphBuilder('encoder', { weights: store });
  const mel = b.input(ENCODER_INPUT, 'float32', ['batch', a.numMelBins, 'mel_frames']);
  const root = b.scope('/audio');

  const sizes = melSizes(root.scope('input_shape'), mel);
  let x = chunkMel(root.scope('chunking'), mel, sizes, dims);
  for (const conv of ['conv2d1', 'conv2d2', 'conv2d3']) x = await convGelu(root.scope(conv), src, x, conv);
  const tokens = await convOutWithPositions(root, src, x, sizes, dims);

  const count = validTokenCount(root.scope('valid_tokens'), sizes, a.chunkFrames);
  const out = await encoderTransformer(root, src, dims, tokens, count, sizes.batch);
  b.output(ENCODER_OUTPUT, 'float32', ['batch', 'audio_tokens', a.outputDim], out);
  return b;
}

/**
 * Everything after the front end: the `count` valid tokens of `tokens` [B, chunks*t, d] (with
 * positions) through the windowed layers, ln_post and the projections -> [B, count, output_dim].
 * Shared by the split layout's encoder and the sherpa-onnx layout's (sherpa-graphs.ts).
 *
 *   tokens ──keep the count valid tokens──layers (windows of 104)──ln_post──proj1──GELU──proj2──▶ out
 */
export async function encoderTransformer(
  root: GraphBuilder, src: TensorSource, dims: ModelDims, tokens: string, count: string, batch: string,
): Promise<string> {
  const a = dims.audio;
  const window = attentionWindowTokens(a.chunkFrames, a.nWindowInfer);
  let h = keepValidTokens(root.scope('valid_tokens'), tokens, count);
  const layout = windowLayout(root.scope('windows'), count, { batch }, window, a.dModel);
  const ctx = { layout, window, mask: windowMask(root.scope('attn_mask'), layout, { batch }, window) };
  for (let l = 0; l < a.layers; l++) h = await encoderLayer(root.scope(`layers.${l}`), src, h, l, ctx, dims);

  const post = await encoderLayerNorm(root.scope('ln_post'), src, h, `${AUDIO_TOWER}.ln_post`);
  const p1 = gelu(root.scope('act'), await encoderLinear(root.scope('proj1'), src, post, `${AUDIO_TOWER}.proj1`));
  return encoderLinear(root.scope('proj2'), src, p1, `${AUDIO_TOWER}.proj2`);
}
