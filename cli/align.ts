import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Option } from 'commander';
import { UserError, fsError } from '../common/errors.js';
import { VARIANTS } from '../model-dir/files.js';
import { formatWords, type WordFormat } from '../runtime/align-format.js';
import { AlignerModel, alignableWords, alignSamples, type Alignment } from '../runtime/aligner.js';
import { loadAudio } from '../runtime/audio.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { emitResult, threadsOption, type CommonOptions } from './output.js';

/**
 * `qwen3-onnx align --model-dir DIR --language L AUDIO --text "..."`: start and end time of every
 * word of a known transcript, from an exported Qwen3-ForcedAligner directory (runtime/aligner.ts).
 * Prints a table (start, end, word), or --json / --srt / --vtt.
 */

export interface AlignCliOptions extends CommonOptions {
  modelDir: string;
  language: string;
  text?: string;
  textFile?: string;
  variant: string;
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
}

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

export async function runAlign(file: string, opts: AlignCliOptions): Promise<AlignReport> {
  const started = performance.now();
  const language = resolveLanguage(opts.language);
  if (language === undefined) throw new UserError('--language must name the transcript\'s language (e.g. English)');
  const { text, what } = await transcriptOf(opts);
  // Refuse a transcript with nothing to time before anything heavy is loaded.
  alignableWords(text, language, what);
  const t0 = performance.now();
  const audio = await loadAudio(file);
  const audioMs = performance.now() - t0;
  const model = await AlignerModel.load(opts.modelDir, { variant: opts.variant, threads: opts.threads });
  try {
    const alignment = await alignSamples(model, audio.samples, text, language);
    return {
      file, modelDir: opts.modelDir, variant: opts.variant, language, audioSeconds: audio.durationS,
      loadMs: model.loadMs, audioMs, totalMs: performance.now() - started, ...alignment,
    };
  } finally {
    await model.release();
  }
}

export function register(program: Command): void {
  program
    .command('align')
    .description('word start and end times for a known transcript (exported Qwen3-ForcedAligner directory, onnxruntime)')
    .argument('<audio>', 'WAV file (PCM 8/16/24/32-bit or float; any rate and channel count), at most 180 s')
    .requiredOption('--model-dir <dir>', 'exported forced-aligner directory')
    .requiredOption('--language <name>', 'language of the transcript (picks the word splitter), e.g. English')
    .option('--text <text>', 'the transcript')
    .option('--text-file <file>', 'read the transcript from a UTF-8 file')
    .addOption(new Option('--variant <variant>', 'which graphs to load').choices([...VARIANTS]).default('fp32'))
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', threadsOption())
    .option('--json', 'machine-readable output (words, chunks, timings) on stdout')
    .option('--srt', 'SubRip subtitles, one cue per word')
    .option('--vtt', 'WebVTT subtitles, one cue per word')
    .action(async (file: string, opts: AlignCliOptions) => {
      const format = wordFormat(opts);
      const report = await runAlign(file, opts);
      emitResult(opts, report, () => formatWords(report.words, format));
    });
}
