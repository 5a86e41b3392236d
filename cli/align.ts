import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { Option } from 'commander';
import { UserError, fsError } from '../common/errors.js';
import { readModelConfig } from '../model-dir/config.js';
import { VARIANTS } from '../model-dir/files.js';
import { formatWords, type WordFormat } from '../runtime/align-format.js';
import { capToChunks, placeTranscript, transcribeChunks, type ChunkTranscript } from '../runtime/align-long.js';
import {
  AlignerModel, MAX_ALIGN_CHUNK_SECONDS, alignChunkBounds, alignableWords, alignSamples, alignSegments, readAlignerConfig,
  tooLongForOnePass, type Alignment,
} from '../runtime/aligner.js';
import { loadAudio, MODEL_SAMPLE_RATE } from '../runtime/audio.js';
import { loadSpeechModel } from '../runtime/load-speech-model.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { emitResult, progressFor, threadsOption, type CommonOptions } from './output.js';

/**
 * `qwen3-onnx align --model-dir DIR --language L AUDIO --text "..."`: start and end time of every
 * word of a known transcript, from an exported Qwen3-ForcedAligner directory (runtime/aligner.ts).
 * Prints a table (start, end, word), or --json / --srt / --vtt. Audio longer than one aligner pass
 * (180 s) needs --asr: an ASR model transcribes each chunk to find where the transcript's words
 * fall (runtime/align-long.ts).
 */

export interface AlignCliOptions extends CommonOptions {
  modelDir: string;
  language: string;
  text?: string;
  textFile?: string;
  variant: string;
  /** An ASR model directory, used only for audio longer than one pass. */
  asr?: string;
  asrVariant: string;
  threads?: number;
  srt?: boolean;
  vtt?: boolean;
}

export interface AlignReport extends Alignment {
  file: string;
  modelDir: string;
  variant: string;
  language: string;
  audioSeconds: number;
  loadMs: number;
  audioMs: number;
  totalMs: number;
  /** Audio longer than one pass: how the transcript's words were placed in the chunks (--asr). */
  placement?: PlacementReport;
}

/** What the ASR model heard in one chunk, and how many of the transcript's units were placed there. */
export interface ChunkPlacement { offsetS: number; durationS: number; asrText: string; asrUnits: number; words: number; asrMs: number }

export interface PlacementReport {
  asrModelDir: string;
  asrVariant: string;
  asrLoadMs: number;
  /** The audio's chunks (all of them, also those no word fell in). */
  chunks: number;
  /** The transcript's units, and how many equal (case-folded) the ASR unit they were matched to. */
  units: number;
  exactMatches: number;
  matchedShare: number;
  /** Word times capped at their chunk's end (runtime/align-long.ts capToChunks). */
  cappedTimes: number;
  perChunk: ChunkPlacement[];
}

/** Below this share of exactly matched units the transcript is said to be unlike the audio (a warning, never a refusal). */
export const LOW_MATCH_SHARE = 0.5;

/** The transcript of --text or --text-file (exactly one of them). */
export async function transcriptOf(opts: { text?: string; textFile?: string }): Promise<{ text: string; what: string }> {
  if ((opts.text === undefined) === (opts.textFile === undefined)) throw new UserError('give the transcript with exactly one of --text and --text-file');
  if (opts.text !== undefined) return { text: opts.text, what: '--text' };
  const file = opts.textFile as string;
  let text: string;
  try { text = await readFile(file, 'utf8'); } catch (err) { throw fsError('cannot read', file, err); }
  return { text: text.replace(/^\uFEFF/, ''), what: `--text-file ${file}` };
}

export function wordFormat(opts: { srt?: boolean; vtt?: boolean; json?: boolean }): WordFormat {
  if ([opts.srt, opts.vtt, opts.json].filter(Boolean).length > 1) throw new UserError('choose one output format: --json, --srt or --vtt');
  return opts.srt ? 'srt' : opts.vtt ? 'vtt' : 'text';
}

/** --asr names an ASR model directory (either layout): checked before any model is loaded. */
export async function checkAsrModelDir(dir: string): Promise<void> {
  let isDir: boolean;
  try { isDir = (await stat(dir)).isDirectory(); } catch (err) { throw fsError('--asr: cannot read', dir, err); }
  if (!isDir) throw new UserError(`--asr ${dir}: not a directory (give an exported Qwen3-ASR model directory)`);
  try { await readModelConfig(dir); } catch (err) {
    if (err instanceof UserError) throw new UserError(`--asr: ${err.message}`);
    throw err;
  }
}

export async function runAlign(file: string, opts: AlignCliOptions, onWarning: (line: string) => void = () => {}): Promise<AlignReport> {
  const started = performance.now();
  const language = resolveLanguage(opts.language);
  if (language === undefined) throw new UserError('--language must name the transcript\'s language (e.g. English)');
  const { text, what } = await transcriptOf(opts);
  // Refuse a transcript with nothing to time before anything is read, wrong directories before any model is.
  const units = alignableWords(text, language, what);
  const t0 = performance.now();
  const audio = await loadAudio(file);
  const audioMs = performance.now() - t0;
  await readAlignerConfig(opts.modelDir);
  if (opts.asr !== undefined) await checkAsrModelDir(opts.asr);
  const seconds = audio.samples.length / MODEL_SAMPLE_RATE;
  const base = { file, modelDir: opts.modelDir, variant: opts.variant, language, audioSeconds: audio.durationS, audioMs };
  if (seconds <= MAX_ALIGN_CHUNK_SECONDS) {
    const model = await AlignerModel.load(opts.modelDir, { variant: opts.variant, threads: opts.threads });
    try {
      const alignment = await alignSamples(model, audio.samples, text, language);
      return { ...base, loadMs: model.loadMs, totalMs: performance.now() - started, ...alignment };
    } finally {
      await model.release();
    }
  }
  if (opts.asr === undefined) throw tooLongForOnePass(seconds);

  // Long audio: the ASR pass first, released before the aligner is loaded (never both in memory).
  const bounds = alignChunkBounds(audio.samples, MAX_ALIGN_CHUNK_SECONDS);
  const progress = progressFor(opts);
  const asr = await loadSpeechModel(opts.asr, { variant: opts.asrVariant, threads: opts.threads });
  let chunks: ChunkTranscript[];
  try {
    chunks = await transcribeChunks(asr, audio.samples, bounds, language, (done, total) => progress.update('transcribe chunks', done, total));
  } finally {
    progress.finish();
    await asr.release();
  }
  const { segments, placement } = placeTranscript(units, chunks);
  const model = await AlignerModel.load(opts.modelDir, { variant: opts.variant, threads: opts.threads });
  let alignment: Alignment;
  try {
    alignment = await alignSegments(model, audio.samples, segments, true);
  } finally {
    await model.release();
  }
  const cappedTimes = capToChunks(alignment.words, segments);
  if (placement.matchedShare < LOW_MATCH_SHARE) {
    onWarning(`only ${(100 * placement.matchedShare).toFixed(0)}% of the transcript's ${units.length} words match what ${opts.asr} heard in the audio; the transcript may not be what is said in it, and the times may be wrong`);
  }
  return {
    ...base, loadMs: model.loadMs, totalMs: performance.now() - started, ...alignment,
    placement: {
      asrModelDir: opts.asr, asrVariant: opts.asrVariant, asrLoadMs: asr.loadMs, chunks: chunks.length,
      units: units.length, exactMatches: placement.exactMatches, matchedShare: placement.matchedShare, cappedTimes,
      perChunk: chunks.map((c, k) => ({
        offsetS: c.start / MODEL_SAMPLE_RATE, durationS: (c.end - c.start) / MODEL_SAMPLE_RATE,
        asrText: c.text, asrUnits: c.units.length, words: segments[k].words.length, asrMs: c.asrMs,
      })),
    },
  };
}

export function register(program: Command): void {
  program
    .command('align')
    .description('word start and end times for a known transcript (exported Qwen3-ForcedAligner directory, onnxruntime)')
    .argument('<audio>', 'WAV file (PCM 8/16/24/32-bit or float; any rate and channel count); longer than 180 s needs --asr')
    .requiredOption('--model-dir <dir>', 'exported forced-aligner directory')
    .requiredOption('--language <name>', 'language of the transcript (picks the word splitter), e.g. English')
    .option('--text <text>', 'the transcript')
    .option('--text-file <file>', 'read the transcript from a UTF-8 file')
    .addOption(new Option('--variant <variant>', 'which graphs to load').choices([...VARIANTS]).default('fp32'))
    .option('--asr <dir>', 'exported Qwen3-ASR model directory (either layout) for audio longer than 180 s: the audio is cut at quiet points as transcribe --timestamps cuts it, each chunk transcribed to find which of the transcript\'s words fall in it, then aligned; not loaded for shorter audio')
    .addOption(new Option('--asr-variant <variant>', 'which ASR graphs to load').choices([...VARIANTS]).default('fp32'))
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', threadsOption())
    .option('--json', 'machine-readable output (words, chunks, timings; with --asr on long audio, placement) on stdout')
    .option('--srt', 'SubRip subtitles, one cue per word')
    .option('--vtt', 'WebVTT subtitles, one cue per word')
    .action(async (file: string, opts: AlignCliOptions) => {
      const format = wordFormat(opts);
      const report = await runAlign(file, opts, (line) => process.stderr.write(`qwen3-onnx: warning: ${line}\n`));
      emitResult(opts, report, () => formatWords(report.words, format));
    });
}
