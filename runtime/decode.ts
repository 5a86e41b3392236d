import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { loadAudio } from './audio.js';
import { logMelSpectrogram, type LogMel } from './mel.js';
import { buildPrompt, endsInRepeatedCycle, parseAsrOutput, type Prompt } from './prompt.js';
import { DEFAULT_SEGMENT_SECONDS, joinSegmentTexts, mergeLanguages, segmentBounds, segmentSamples } from './segment.js';
import type { AsrModel } from './session.js';
import type { SpeechModel } from './speech-model.js';

/**
 * Greedy speech-to-text with the three graphs:
 *
 *   mel [1,128,T] --encoder--> audio_features [1,A,H]
 *   prompt ids (A audio pads at audio_offset) + audio_features --decoder_init--> logits, KV
 *   loop: argmax -> embed_tokens row -> decoder_step(row, position, KV) --> logits, KV'
 *
 * The present_keys/present_values tensors of one call are fed unchanged as the next
 * call's past_keys/past_values (no copies through JS arrays).
 */

export interface DecodeOptions {
  maxNewTokens: number;
  /** Stop when the last tokens repeat a short cycle many times (see endsInRepeatedCycle). Default true. */
  repetitionGuard?: boolean;
  /** Called with the logits row of every generated position (prefill's last row, then each step). */
  onLogits?: (step: number, logits: Float32Array) => void;
  /**
   * Teacher forcing: feed these tokens instead of the argmax (generation still stops at
   * their end). Used by `compare`.
   */
  forcedTokens?: readonly number[];
}

export interface GreedyResult {
  /** Generated ids without the EOS that stopped generation. */
  tokens: number[];
  stoppedAtEos: boolean;
  stoppedByRepetitionGuard: boolean;
  prefillMs: number;
  stepMs: number[];
}

export interface TranscribeOptions {
  language?: string;
  context?: string;
  /** New tokens per segment. */
  maxNewTokens?: number;
  repetitionGuard?: boolean;
  /** Nominal segment length for long audio (runtime/segment.ts); default DEFAULT_SEGMENT_SECONDS. */
  maxSegmentSeconds?: number;
}

/** One segment of a long recording, decoded on its own (same context and language). */
export interface SegmentTranscription {
  /** Where it starts in the 16 kHz audio, and how long it is (before any padding). */
  offsetS: number;
  durationS: number;
  melFrames: number;
  audioTokens: number;
  /** Length of the prompt decoder_init took (audio tokens + template). */
  promptTokens: number;
  tokens: number;
  language: string;
  text: string;
  stopReason: StopReason;
}

export type StopReason = 'eos' | 'max_new_tokens' | 'repetition';

export interface Timings {
  /** Model load (only in results of a freshly loaded model). */
  loadMs?: number;
  audioMs: number;
  melMs: number;
  encoderMs: number;
  prefillMs: number;
  stepMs: number[];
  /** audio + mel + encoder + prefill + steps. */
  totalMs: number;
  /** totalMs / audio duration: below 1 is faster than real time. */
  realTimeFactor: number;
}

export interface Transcription {
  file?: string;
  /** Languages of the segments, consecutive repeats merged (`English`, `Chinese,English`). */
  language: string;
  /** The segments' texts joined. */
  text: string;
  /** The decoded outputs before parsing (`language X<asr_text>...`, special tokens removed), one line per segment. */
  raw: string;
  /** Generated ids of every segment, in order. */
  tokens: number[];
  /** Every segment ended at an EOS. */
  stoppedAtEos: boolean;
  /** Why generation ended (the first segment that did not end at an EOS decides): an EOS token, --max-new-tokens, or the repetition guard. */
  stopReason: StopReason;
  audioSeconds: number;
  /** Summed over the segments. */
  melFrames: number;
  audioTokens: number;
  segments: SegmentTranscription[];
  /** Summed over the segments (stepMs: every step of every segment). */
  timings: Timings;
}

export const DEFAULT_MAX_NEW_TOKENS = 512;

/** Valid encoder tokens for T mel frames: 13 * floor(T/100) + f(f(f(T mod 100))), f(t) = floor((t+1)/2). */
export function audioTokenCount(frames: number): number {
  const f = (t: number): number => Math.floor((t + 1) / 2);
  return 13 * Math.floor(frames / 100) + f(f(f(frames % 100)));
}

/** Runs the encoder on a mel spectrogram. Returns the audio_features tensor [1, A, H]. */
export async function runEncoder(model: AsrModel, mel: LogMel): Promise<ort.Tensor> {
  const input = new ort.Tensor('float32', mel.data, [1, mel.nMels, mel.frames]);
  const out = await model.encoder.run({ mel: input });
  const features = out.audio_features;
  if (!features) throw new Error(`${model.files.encoder}: no audio_features output`);
  const expected = audioTokenCount(mel.frames);
  if (features.dims.length !== 3 || features.dims[1] !== expected || features.dims[2] !== model.config.decoder.hidden_size) {
    throw new UserError(`${model.files.encoder}: audio_features has shape [${features.dims.join(', ')}], expected [1, ${expected}, ${model.config.decoder.hidden_size}] for ${mel.frames} mel frames`);
  }
  return features;
}

function argmaxRow(data: Float32Array, offset: number, length: number): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i += 1) {
    const v = data[offset + i];
    if (v > bestValue) { bestValue = v; best = i; }
  }
  return best;
}

/** Logits of the last position of a [1, S', V] tensor (a view, not a copy). */
function lastLogits(logits: ort.Tensor): Float32Array {
  const vocab = logits.dims[2];
  const rows = logits.dims[1];
  const data = logits.data as Float32Array;
  return data.subarray((rows - 1) * vocab, rows * vocab);
}

const int64 = (values: number[], dims: number[]): ort.Tensor =>
  new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);

/**
 * The greedy loop of both layouts: `prefill` returns the first logits row, `step(token, n)` feeds
 * one token at position S + n and returns the next row. Stops at an EOS id, after maxNewTokens
 * (the last token is never fed) or on a repeated cycle; forced tokens (teacher forcing) replace the
 * argmax and skip both stops.
 */
export async function greedyLoop(
  prefill: () => Promise<Float32Array>, step: (token: number, n: number) => Promise<Float32Array>,
  eosIds: readonly number[], opts: DecodeOptions,
): Promise<GreedyResult> {
  const eos = new Set(eosIds);
  const limit = opts.forcedTokens ? Math.min(opts.maxNewTokens, opts.forcedTokens.length) : opts.maxNewTokens;
  const guard = opts.repetitionGuard ?? true;
  const started = performance.now();
  let row = await prefill();
  const prefillMs = performance.now() - started;
  const stepMs: number[] = [];
  const tokens: number[] = [];
  for (let n = 0; n < limit; n += 1) {
    opts.onLogits?.(n, row);
    const next = opts.forcedTokens ? opts.forcedTokens[n] : argmaxRow(row, 0, row.length);
    if (!opts.forcedTokens && eos.has(next)) return { tokens, stoppedAtEos: true, stoppedByRepetitionGuard: false, prefillMs, stepMs };
    tokens.push(next);
    if (n + 1 === limit) break;
    if (guard && !opts.forcedTokens && endsInRepeatedCycle(tokens)) {
      return { tokens, stoppedAtEos: false, stoppedByRepetitionGuard: true, prefillMs, stepMs };
    }
    const t0 = performance.now();
    row = await step(next, n);
    stepMs.push(performance.now() - t0);
  }
  return { tokens, stoppedAtEos: false, stoppedByRepetitionGuard: false, prefillMs, stepMs };
}

/** Prefill + greedy loop on the split layout (decoder_init, then decoder_step with the caches it returns). */
export async function greedyDecode(model: AsrModel, prompt: Prompt, audioFeatures: ort.Tensor, opts: DecodeOptions): Promise<GreedyResult> {
  const hidden = model.config.decoder.hidden_size;
  const S = prompt.ids.length;
  let out: ort.InferenceSession.OnnxValueMapType;
  return greedyLoop(async () => {
    out = await model.decoderInit.run({
      input_ids: int64(prompt.ids, [1, S]),
      position_ids: int64(prompt.ids.map((_, i) => i), [1, S]),
      audio_features: audioFeatures,
      audio_offset: int64([prompt.audioOffset], [1]),
    });
    return lastLogits(out.logits);
  }, async (token, n) => {
    const row = await model.embeddings.row(token);
    out = await model.decoderStep.run({
      input_embeds: new ort.Tensor('float32', row, [1, 1, hidden]),
      position_ids: int64([S + n], [1, 1]),
      past_keys: out.present_keys,
      past_values: out.present_values,
    });
    return lastLogits(out.logits);
  }, model.config.special_tokens.eos_token_ids, opts);
}

/**
 * Transcribes 16 kHz mono samples. Audio longer than the segment length is cut at quiet points
 * (runtime/segment.ts) and each segment is decoded on its own with the same context and
 * language, as the official package does; the texts are joined and the languages merged.
 */
export async function transcribeSamples(model: SpeechModel, samples: Float32Array, opts: TranscribeOptions = {}, audioMs = 0): Promise<Transcription> {
  const bounds = segmentBounds(samples, 16000, opts.maxSegmentSeconds ?? DEFAULT_SEGMENT_SECONDS);
  const segments: SegmentTranscription[] = [];
  const raws: string[] = [];
  const tokens: number[] = [];
  const stepMs: number[] = [];
  let melMs = 0;
  let encoderMs = 0;
  let prefillMs = 0;
  for (const seg of bounds) {
    let t0 = performance.now();
    const mel = logMelSpectrogram(segmentSamples(samples, seg, 16000, bounds.length > 1));
    melMs += performance.now() - t0;
    t0 = performance.now();
    const encoded = await model.encode(mel);
    encoderMs += performance.now() - t0;
    const prompt = buildPrompt(model.tokenizer, { audioTokens: encoded.audioTokens, context: opts.context, language: opts.language });
    const result = await model.decode(prompt, encoded, {
      maxNewTokens: opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS,
      repetitionGuard: opts.repetitionGuard,
    });
    prefillMs += result.prefillMs;
    stepMs.push(...result.stepMs);
    tokens.push(...result.tokens);
    const raw = model.tokenizer.decode(result.tokens, { skipSpecialTokens: true });
    raws.push(raw);
    const parsed = parseAsrOutput(raw, opts.language);
    segments.push({
      offsetS: seg.start / 16000,
      durationS: (seg.end - seg.start) / 16000,
      melFrames: mel.frames,
      audioTokens: encoded.audioTokens,
      promptTokens: prompt.ids.length,
      tokens: result.tokens.length,
      language: parsed.language,
      text: parsed.text,
      stopReason: result.stoppedAtEos ? 'eos' : result.stoppedByRepetitionGuard ? 'repetition' : 'max_new_tokens',
    });
  }
  const audioSeconds = samples.length / 16000;
  const totalMs = audioMs + melMs + encoderMs + prefillMs + stepMs.reduce((a, b) => a + b, 0);
  return {
    language: mergeLanguages(segments.map((s) => s.language)),
    text: joinSegmentTexts(segments.map((s) => s.text)),
    raw: raws.join('\n'),
    tokens,
    stoppedAtEos: segments.every((s) => s.stopReason === 'eos'),
    stopReason: segments.find((s) => s.stopReason !== 'eos')?.stopReason ?? 'eos',
    audioSeconds,
    melFrames: segments.reduce((n, s) => n + s.melFrames, 0),
    audioTokens: segments.reduce((n, s) => n + s.audioTokens, 0),
    segments,
    timings: {
      audioMs, melMs, encoderMs, prefillMs, stepMs, totalMs,
      realTimeFactor: audioSeconds > 0 ? totalMs / 1000 / audioSeconds : 0,
    },
  };
}

/** Loads a WAV file and transcribes it. */
export async function transcribeFile(model: SpeechModel, file: string, opts: TranscribeOptions = {}): Promise<Transcription> {
  const t0 = performance.now();
  const audio = await loadAudio(file);
  const audioMs = performance.now() - t0;
  return { file, ...(await transcribeSamples(model, audio.samples, opts, audioMs)) };
}
