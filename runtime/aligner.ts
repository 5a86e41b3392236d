import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { parseJsonWith } from '../checkpoint/config.js';
import { UserError, fsError } from '../common/errors.js';
import { alignerGraphFileName, modelDirKind, type AlignerGraphName } from '../model-dir/aligner.js';
import { CONFIG_FILE, settleModelDir } from '../model-dir/files.js';
import { buildAlignerPrompt } from './align-prompt.js';
import { repairTimestamps } from './align-repair.js';
import { splitWords } from './align-words.js';
import { MODEL_SAMPLE_RATE } from './audio.js';
import { audioTokenCount } from './decode.js';
import { logMelSpectrogram } from './mel.js';
import { segmentBounds, segmentSamples } from './segment.js';
import { Tokenizer } from './tokenizer.js';

/**
 * Word timestamps with an exported Qwen3-ForcedAligner directory (shared/ALIGNER.md; the directory's
 * files are model-dir/aligner.ts's: encoder.onnx + aligner_decoder.onnx):
 *
 *   mel [1,128,T] --encoder--> audio_features [1,N,H]
 *   ids (audio pads + words + <timestamp> pairs), audio_features --aligner_decoder--> timestamp_classes [1,2W]
 *   ms = class * timestamp_segment_ms -> monotonicity repair -> (start, end) per word
 *
 * One forward pass per chunk: no generation, no KV cache.
 */

/** The official transcribe cuts audio for alignment into chunks of at most this many seconds (MAX_FORCE_ALIGN_INPUT_SECONDS). */
export const MAX_ALIGN_CHUNK_SECONDS = 180;

/** What align reads from an aligner directory's config.json (the rest is the encoder/decoder sections). */
const AlignerConfigSchema = z.looseObject({
  model_kind: z.literal('forced_aligner'),
  timestamp_token_id: z.number().int().nonnegative(),
  timestamp_segment_ms: z.number().positive(),
  classify_num: z.number().int().positive(),
  decoder: z.looseObject({ hidden_size: z.number().int().positive() }),
});
export type AlignerConfig = z.infer<typeof AlignerConfigSchema>;

/** config.json of an aligner directory; an ASR directory (no model_kind, or "asr") is named as such. */
export async function readAlignerConfig(dir: string): Promise<AlignerConfig> {
  if ((await modelDirKind(dir)) !== 'forced_aligner') {
    throw new UserError(`${dir} is an ASR model directory, not a forced aligner (config.json has no model_kind "forced_aligner"); export Qwen/Qwen3-ForcedAligner-0.6B and pass that directory`);
  }
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) { throw fsError('cannot read', path, err); }
  return parseJsonWith(AlignerConfigSchema, text, path);
}

async function isFile(path: string): Promise<boolean> {
  try { return (await stat(path)).isFile(); } catch { return false; }
}

export interface AlignerFiles { encoder: string; decoder: string }

/**
 * The graphs of a variant: fp32 reads encoder.onnx and aligner_decoder.onnx; another variant
 * `<graph>.<variant>.onnx`, where only the encoder may fall back to the float file.
 */
export async function resolveAlignerFiles(dir: string, variant: string): Promise<AlignerFiles> {
  if (!/^[a-z0-9]+$/.test(variant)) throw new UserError(`--variant must be like fp32 or int4, got "${variant}"`);
  const pick = async (graph: AlignerGraphName, mayFallBack: boolean): Promise<string> => {
    if (variant !== 'fp32') {
      const suffixed = alignerGraphFileName(graph, variant);
      if (await isFile(join(dir, suffixed))) return join(dir, suffixed);
      if (!mayFallBack) throw new UserError(`${dir}: variant ${variant} has no ${suffixed} (run quantize first)`);
    }
    const plain = alignerGraphFileName(graph);
    if (!(await isFile(join(dir, plain)))) throw new UserError(`${dir}: ${plain} is missing (not a complete aligner directory?)`);
    return join(dir, plain);
  };
  return { encoder: await pick('encoder', true), decoder: await pick('aligner_decoder', false) };
}

async function createSession(path: string, threads: number | undefined): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, {
      executionMode: 'sequential', graphOptimizationLevel: 'all',
      ...(threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {}),
    });
  } catch (err) {
    throw new UserError(`${path}: onnxruntime cannot load it (${String((err as Error)?.message ?? err).split('\n')[0]})`);
  }
}

export interface AlignerLoadOptions { variant?: string; threads?: number }

export class AlignerModel {
  private constructor(
    readonly dir: string,
    readonly variant: string,
    readonly files: AlignerFiles,
    readonly config: AlignerConfig,
    readonly tokenizer: Tokenizer,
    readonly encoder: ort.InferenceSession,
    readonly decoder: ort.InferenceSession,
    readonly loadMs: number,
  ) {}

  static async load(dir: string, opts: AlignerLoadOptions = {}): Promise<AlignerModel> {
    const started = performance.now();
    const variant = opts.variant ?? 'fp32';
    const config = await readAlignerConfig(dir);
    settleModelDir(dir);
    const files = await resolveAlignerFiles(dir, variant);
    const tokenizer = await Tokenizer.load(dir);
    const encoder = await createSession(files.encoder, opts.threads);
    let decoder: ort.InferenceSession;
    try { decoder = await createSession(files.decoder, opts.threads); } catch (err) { await encoder.release(); throw err; }
    return new AlignerModel(dir, variant, files, config, tokenizer, encoder, decoder, performance.now() - started);
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}

/** One aligned unit; times in seconds, 3 decimals (official ForcedAlignItem). */
export interface TimedWord { text: string; start_time: number; end_time: number }

export interface ChunkAlignment {
  offsetS: number;
  durationS: number;
  audioTokens: number;
  promptTokens: number;
  words: number;
  /** The classes the head chose, in order (start, end of each word), before the repair. */
  classes: number[];
  /** How many of the 2W values the repair rewrote. */
  repaired: number;
}

export interface AlignTimings { melMs: number; encoderMs: number; decoderMs: number }

export interface Alignment {
  words: TimedWord[];
  chunks: ChunkAlignment[];
  timings: AlignTimings;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Runs the encoder on 16 kHz samples; checks the token count against the frame count. */
async function encode(model: AlignerModel, samples: Float32Array, timings: AlignTimings): Promise<ort.Tensor> {
  let t0 = performance.now();
  const mel = logMelSpectrogram(samples);
  timings.melMs += performance.now() - t0;
  t0 = performance.now();
  const out = await model.encoder.run({ mel: new ort.Tensor('float32', mel.data, [1, mel.nMels, mel.frames]) });
  timings.encoderMs += performance.now() - t0;
  const features = out.audio_features;
  if (!features) throw new UserError(`${model.files.encoder}: no audio_features output`);
  const expected = audioTokenCount(mel.frames);
  const hidden = model.config.decoder.hidden_size;
  if (features.dims.length !== 3 || features.dims[1] !== expected || features.dims[2] !== hidden) {
    throw new UserError(`${model.files.encoder}: audio_features has shape [${features.dims.join(', ')}], expected [1, ${expected}, ${hidden}] for ${mel.frames} mel frames`);
  }
  return features;
}

/** Aligns `words` to one chunk of samples; times relative to the chunk's start, in ms before rounding. */
async function alignChunk(
  model: AlignerModel, samples: Float32Array, words: readonly string[], timings: AlignTimings,
): Promise<{ ms: number[]; classes: number[]; audioTokens: number; promptTokens: number }> {
  const features = await encode(model, samples, timings);
  const prompt = buildAlignerPrompt(model.tokenizer, words, features.dims[1], model.config.timestamp_token_id);
  const t0 = performance.now();
  const out = await model.decoder.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(prompt.ids, (v) => BigInt(v)), [1, prompt.ids.length]),
    audio_features: features,
  });
  timings.decoderMs += performance.now() - t0;
  const classesTensor = out.timestamp_classes;
  if (!classesTensor || classesTensor.type !== 'int64' || classesTensor.dims.length !== 2 || classesTensor.dims[1] !== prompt.timestamps) {
    throw new UserError(`${model.files.decoder}: timestamp_classes is ${classesTensor ? `${classesTensor.type} [${classesTensor.dims.join(', ')}]` : 'missing'}, expected int64 [1, ${prompt.timestamps}]`);
  }
  const classes = Array.from(classesTensor.data as BigInt64Array, (v) => Number(v));
  // The official code multiplies the class by the segment time, no offset and no clamping.
  const ms = repairTimestamps(classes.map((c) => c * model.config.timestamp_segment_ms));
  return { ms, classes, audioTokens: prompt.audioTokens, promptTokens: prompt.ids.length };
}

function chunkSummary(start: number, end: number, words: number, r: { ms: number[]; classes: number[]; audioTokens: number; promptTokens: number }, segmentMs: number): ChunkAlignment {
  const repaired = r.classes.reduce((n, c, i) => n + (c * segmentMs !== r.ms[i] ? 1 : 0), 0);
  return {
    offsetS: start / MODEL_SAMPLE_RATE, durationS: (end - start) / MODEL_SAMPLE_RATE,
    audioTokens: r.audioTokens, promptTokens: r.promptTokens, words, classes: r.classes, repaired,
  };
}

/** The units of `text`, refusing a transcript with nothing the aligner can time. */
export function alignableWords(text: string, language: string, what = 'the transcript'): string[] {
  if (text.trim() === '') throw new UserError(`${what} is empty`);
  const words = splitWords(text, language);
  if (words.length === 0) throw new UserError(`${what} has nothing to align (no letters or numbers)`);
  return words;
}

/**
 * The refusal of audio longer than one pass without a way to place the words: the official code
 * only cuts long audio on the transcribe path, where every chunk has its own text; one transcript
 * cannot be split across chunks without knowing where its words fall (align --asr finds out).
 */
export function tooLongForOnePass(seconds: number): UserError {
  return new UserError(`audio is ${seconds.toFixed(1)} s; align takes at most ${MAX_ALIGN_CHUNK_SECONDS} s in one pass (for longer audio give align --asr <dir>, an ASR model that finds which words fall in which chunk, or use transcribe --timestamps --aligner, which aligns each chunk's own transcription)`);
}

/** Aligns a transcript to 16 kHz audio in one pass; audio longer than MAX_ALIGN_CHUNK_SECONDS is refused (tooLongForOnePass). */
export async function alignSamples(model: AlignerModel, samples: Float32Array, text: string, language: string): Promise<Alignment> {
  const seconds = samples.length / MODEL_SAMPLE_RATE;
  if (seconds > MAX_ALIGN_CHUNK_SECONDS) throw tooLongForOnePass(seconds);
  const words = alignableWords(text, language);
  return alignSegments(model, samples, [{ start: 0, end: samples.length, words }], false);
}

/** A piece of the audio with the words said in it. */
export interface WordSegment { start: number; end: number; words: readonly string[] }

/**
 * Aligns each segment's words to its samples (a segment shorter than 0.5 s zero-padded when `padShort`,
 * as the official chunks are) and shifts the times by the segment's offset, rounded to 3 decimals
 * like the official _offset_align_result. Segments without words are skipped.
 */
export async function alignSegments(model: AlignerModel, samples: Float32Array, segments: readonly WordSegment[], padShort: boolean): Promise<Alignment> {
  const timings: AlignTimings = { melMs: 0, encoderMs: 0, decoderMs: 0 };
  const words: TimedWord[] = [];
  const chunks: ChunkAlignment[] = [];
  for (const seg of segments) {
    if (seg.words.length === 0) continue;
    const r = await alignChunk(model, segmentSamples(samples, seg, MODEL_SAMPLE_RATE, padShort), seg.words, timings);
    const offset = seg.start / MODEL_SAMPLE_RATE;
    seg.words.forEach((text, i) => {
      const start = round3(r.ms[2 * i] / 1000);
      const end = round3(r.ms[2 * i + 1] / 1000);
      words.push({ text, start_time: offset === 0 ? start : round3(start + offset), end_time: offset === 0 ? end : round3(end + offset) });
    });
    chunks.push(chunkSummary(seg.start, seg.end, seg.words.length, r, model.config.timestamp_segment_ms));
  }
  return { words, chunks, timings };
}

/** Segment bounds for timestamps: the ASR's own cuts, which must not exceed MAX_ALIGN_CHUNK_SECONDS. */
export function alignChunkBounds(samples: Float32Array, maxSeconds: number): { start: number; end: number }[] {
  return segmentBounds(samples, MODEL_SAMPLE_RATE, Math.min(maxSeconds, MAX_ALIGN_CHUNK_SECONDS));
}
