import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { greedyLoop, type DecodeOptions, type GreedyResult } from './decode.js';
import type { LogMel } from './mel.js';
import type { Prompt } from './prompt.js';
import type { SherpaAsrModel } from './sherpa-session.js';
import type { EncodedAudio } from './speech-model.js';

/**
 * Speech to tokens on the sherpa-onnx layout, doing around the graphs what sherpa-onnx does
 * (shared/SHERPA-ONNX.md "What sherpa does around the graphs"):
 *
 *   mel [1,T,128] --conv_frontend--> [1,A,C], A = 13*ceil(T/100)
 *   + bool mask (valid count) --encoder--> audio_features [1,A,H], trailing zero rows trimmed
 *   prompt ids + features + full-size caches --decoder--> logits [1,S,V] + per-layer deltas
 *   loop: argmax -> decoder(one id, cache_position [cur]) -> logits [1,1,V] + deltas
 *
 * The caches stay in this process's buffers (runtime/sherpa-session.ts KvCacheBuffers): each call
 * reads them in place and only the deltas of its own rows come back, so a step copies a logits
 * row and S x kv x head_dim floats per layer out of onnxruntime, not the whole cache.
 * Stop rules are the split runtime's (decode.ts greedyDecode): EOS ids of config.json,
 * maxNewTokens, the repetition guard, teacher forcing.
 */

/** Mel frames per conv chunk and tokens per full chunk, as compiled into sherpa-onnx. */
export const CONV_CHUNK_FRAMES = 100;
export const TOKENS_PER_CHUNK = 13;

/** sherpa's valid token count: 13 per full chunk + f(f(f(r))) for a remainder r > 0, f(x) = floor((x-1)/2)+1. */
export function sherpaValidTokens(frames: number): number {
  const f = (x: number): number => Math.floor((x - 1) / 2) + 1;
  const rem = frames % CONV_CHUNK_FRAMES;
  return TOKENS_PER_CHUNK * Math.floor(frames / CONV_CHUNK_FRAMES) + (rem > 0 ? f(f(f(rem))) : 0);
}

/** Rows conv_frontend returns for T frames: whole chunks, the last one padded. */
export function convFrontendRows(frames: number): number {
  return TOKENS_PER_CHUNK * Math.ceil(frames / CONV_CHUNK_FRAMES);
}

/** Mel-bin-major [nMels, T] (runtime/mel.ts) -> frame-major [T, nMels] (conv_frontend's [1, T, 128]). */
export function frameMajorMel(mel: LogMel): Float32Array {
  const { nMels, frames, data } = mel;
  const out = new Float32Array(nMels * frames);
  for (let m = 0; m < nMels; m += 1) {
    const row = m * frames;
    for (let t = 0; t < frames; t += 1) out[t * nMels + m] = data[row + t];
  }
  return out;
}

/** sherpa's TrimAudioFeatures rule: rows after the last one whose max |value| exceeds 1e-6 are dropped. */
export function trimmedRows(data: Float32Array, rows: number, hidden: number): number {
  for (let a = rows - 1; a >= 0; a -= 1) {
    const row = a * hidden;
    for (let h = 0; h < hidden; h += 1) if (Math.abs(data[row + h]) > 1e-6) return a + 1;
  }
  return 0;
}

function only(out: Readonly<Record<string, ort.Tensor>>, name: string, graph: string): ort.Tensor {
  const t = out[name];
  if (!t) throw new Error(`${graph}: no ${name} output`);
  return t;
}

/** conv_frontend + encoder on a mel spectrogram; the prompt gets min(valid count, untrimmed rows) pads. */
export async function encodeSherpa(model: SherpaAsrModel, mel: LogMel): Promise<EncodedAudio> {
  const hidden = model.config.decoder.hidden_size;
  const conv = await model.convFrontend.run({
    [model.convFrontend.inputNames[0]]: new ort.Tensor('float32', frameMajorMel(mel), [1, mel.frames, mel.nMels]),
  });
  const convOut = only(conv, model.convFrontend.outputNames[0], model.files.convFrontend);
  const rows = convFrontendRows(mel.frames);
  if (convOut.dims.length !== 3 || convOut.dims[0] !== 1 || convOut.dims[1] !== rows) {
    throw new UserError(`${model.files.convFrontend}: output has shape [${convOut.dims.join(', ')}], expected [1, ${rows}, C] for ${mel.frames} mel frames`);
  }
  const valid = Math.min(sherpaValidTokens(mel.frames), rows);
  const mask = new Uint8Array(rows);
  mask.fill(1, 0, valid);
  const enc = await model.encoder.run({
    [model.encoder.inputNames[0]]: convOut,
    [model.encoder.inputNames[1]]: new ort.Tensor('bool', mask, [1, rows]),
  });
  const features = only(enc, model.encoder.outputNames[0], model.files.encoder);
  if (features.dims.length !== 3 || features.dims[1] !== rows || features.dims[2] !== hidden) {
    throw new UserError(`${model.files.encoder}: output has shape [${features.dims.join(', ')}], expected [1, ${rows}, ${hidden}] for ${rows} conv rows`);
  }
  const data = features.data as Float32Array;
  const kept = trimmedRows(data, rows, hidden);
  if (kept === rows) return { features, audioTokens: valid };
  // An all-zero result is silence (sherpa: empty text); keep one row so the tensor stays valid.
  const view = new ort.Tensor('float32', data.subarray(0, Math.max(kept, 1) * hidden), [1, Math.max(kept, 1), hidden]);
  return { features: view, audioTokens: Math.min(valid, kept) };
}

/** The cache tensors of a decode, keyed by the decoder's input names (views of model.cache's buffers). */
export function cacheFeeds(model: SherpaAsrModel, rows: number): Record<string, ort.Tensor> {
  const kv = model.cache.views(rows);
  const feeds: Record<string, ort.Tensor> = {};
  model.io.pastKv.forEach(([k, v], l) => { feeds[k] = kv[l][0]; feeds[v] = kv[l][1]; });
  return feeds;
}

/**
 * One decoder call: `ids` at positions position.., the audio features and the cache tensors fed
 * as they are; the returned deltas written into the cache buffers at those rows. Returns the
 * last position's logits (a view of the output, valid until the next call).
 * `via.session` runs another session of the same decoder graph (calibrate's tapped copy, whose
 * extra outputs `via.onOutputs` sees) in place of model.decoder.
 */
export async function decoderCall(
  model: SherpaAsrModel, audio: ort.Tensor, kvFeeds: Record<string, ort.Tensor>, ids: BigInt64Array, position: number,
  via: { session?: ort.InferenceSession; onOutputs?: (out: ort.InferenceSession.OnnxValueMapType) => void } = {},
): Promise<Float32Array> {
  const { io, cache } = model;
  const path = model.files.decoder;
  const n = ids.length;
  const positions = new BigInt64Array(n);
  for (let i = 0; i < n; i += 1) positions[i] = BigInt(position + i);
  const out = await (via.session ?? model.decoder).run({
    [io.inputIds]: new ort.Tensor('int64', ids, [1, n]),
    [io.audioFeatures]: audio,
    [io.attentionMask]: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    [io.cachePosition]: new ort.Tensor('int64', positions, [n]),
    ...kvFeeds,
  });
  const logits = only(out, io.logits, path);
  const vocab = logits.dims[2];
  if (logits.dims.length !== 3 || logits.dims[1] !== n) {
    throw new UserError(`${path}: logits has shape [${logits.dims.join(', ')}] for ${n} input ids, expected [1, ${n}, V] (sherpa-onnx reads the last row)`);
  }
  io.deltaKv.forEach(([k, v], l) => {
    const key = only(out, k, path);
    const value = only(out, v, path);
    if (key.dims[1] !== n || value.dims[1] !== n) throw new UserError(`${path}: ${k} has shape [${key.dims.join(', ')}], expected [1, ${n}, ${cache.kvHeads}, ${cache.headDim}]`);
    cache.write(l, position, key.data as Float32Array, value.data as Float32Array);
  });
  via.onOutputs?.(out);
  return (logits.data as Float32Array).subarray((n - 1) * vocab, n * vocab);
}

/** Prefill + greedy loop (decode.ts greedyLoop) on the one decoder graph, caches written in place. */
export async function sherpaGreedyDecode(model: SherpaAsrModel, prompt: Prompt, audio: EncodedAudio, opts: DecodeOptions): Promise<GreedyResult> {
  const limit = opts.forcedTokens ? Math.min(opts.maxNewTokens, opts.forcedTokens.length) : opts.maxNewTokens;
  if (audio.audioTokens === 0 || limit <= 0) return { tokens: [], stoppedAtEos: audio.audioTokens === 0, stoppedByRepetitionGuard: false, prefillMs: 0, stepMs: [] };
  const S = prompt.ids.length;
  // Rows ever written: the prompt plus one per fed token (the last generated one is never fed).
  const kvFeeds = cacheFeeds(model, S + limit - 1);
  const next1 = new BigInt64Array(1);
  return greedyLoop(
    () => decoderCall(model, audio.features, kvFeeds, BigInt64Array.from(prompt.ids, (id) => BigInt(id)), 0),
    (token, n) => { next1[0] = BigInt(token); return decoderCall(model, audio.features, kvFeeds, next1, S + n); },
    model.config.special_tokens.eos_token_ids, opts,
  );
}
