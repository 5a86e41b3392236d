/**
 * Token counts of the audio encoder, exactly as the official
 * `_get_feat_extract_output_lengths` computes them (modeling_qwen3_asr.py).
 * Plain numbers here; encoder-chunks.ts builds the same arithmetic into the graph.
 */

/** Output length of one Conv2d(kernel 3, stride 2, pad 1) along time: (t-1)//2+1, and 0 stays 0. */
export function convOutLength(t: number): number {
  return Math.floor((t + 1) / 2);
}

/** Tokens from `frames` mel frames after the three stride-2 convolutions. */
export function convStackLength(frames: number): number {
  return convOutLength(convOutLength(convOutLength(frames)));
}

/**
 * Encoder tokens for `melFrames` frames: every full chunk gives convStackLength(chunkFrames)
 * (13 for 100-frame chunks), the tail chunk convStackLength(melFrames mod chunkFrames).
 */
export function encoderTokenCount(melFrames: number, chunkFrames = 100): number {
  if (!Number.isInteger(melFrames) || melFrames < 0) throw new RangeError(`mel frame count must be a non-negative integer, got ${melFrames}`);
  return Math.floor(melFrames / chunkFrames) * convStackLength(chunkFrames) + convStackLength(melFrames % chunkFrames);
}

/**
 * Tokens per attention window: the official `window_aftercnn` =
 * (tokens of the longest chunk) * (n_window_infer // chunkFrames). With at least one full
 * chunk the longest chunk gives convStackLength(chunkFrames) tokens (104 for the real
 * configs); a single short chunk gives fewer, but then all its tokens fit in one window
 * anyway, so the fixed full-chunk value is exact for every input length.
 */
export function attentionWindowTokens(chunkFrames: number, nWindowInfer: number): number {
  const perChunk = Math.floor(nWindowInfer / chunkFrames);
  if (perChunk < 1) throw new RangeError(`n_window_infer ${nWindowInfer} is shorter than one ${chunkFrames}-frame chunk`);
  return convStackLength(chunkFrames) * perChunk;
}
