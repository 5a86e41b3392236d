import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { UserError } from '../common/errors.js';
import { DEFAULT_MAX_NEW_TOKENS, transcribeFile, type Transcription } from '../runtime/decode.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { DEFAULT_SEGMENT_SECONDS, MAX_SEGMENT_SECONDS_FLAG, MIN_SEGMENT_SECONDS_FLAG } from '../runtime/segment.js';
import { loadSpeechModel } from '../runtime/load-speech-model.js';
import type { ModelLayout } from '../runtime/speech-model.js';
import { VARIANTS } from '../runtime/session.js';
import { emitResult, intOption, progressFor, threadsOption, type CommonOptions } from './output.js';
import { alignTranscriptions, checkTimestampOptions, formatTimedTranscriptions, timestampSegmentSeconds, type TimestampOptions } from './transcribe-timestamps.js';

/**
 * `qwen3-onnx transcribe --model-dir DIR FILE...`: greedy transcription of WAV files with an
 * exported model directory (onnxruntime on CPU). Prints the text of each file, or with --json
 * the tokens, text, language and timings. Long audio is decoded in segments cut at quiet points
 * (runtime/segment.ts). In a batch, a file that cannot be read is reported on stderr (one line
 * naming it) and the others still run; the command then exits non-zero.
 */

export interface TranscribeCliOptions extends CommonOptions {
  modelDir: string;
  variant: string;
  language?: string;
  context?: string;
  maxNewTokens: number;
  maxSegmentSeconds: number;
  threads?: number;
}

/** A file of a batch that could not be transcribed, and the one-line reason. */
export interface FileFailure { file: string; error: string }

export interface TranscribeReport {
  modelDir: string;
  /** The directory's layout (model-dir/layout.ts), detected. */
  layout: ModelLayout;
  variant: string;
  loadMs: number;
  files: Transcription[];
  failures: FileFailure[];
}

export function positiveInt(flag: string): (value: string) => number {
  const parse = intOption(flag);
  return (value: string) => {
    const n = parse(value);
    if (n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer, got "${value}"`);
    return n;
  };
}

/** Parses a number of seconds within [min, max]. */
export function secondsOption(flag: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} must be a number of seconds from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** A UserError's message, naming `file` when the message does not already. */
export function failureLine(file: string, err: UserError): string {
  return err.message.includes(file) ? err.message : `${file}: ${err.message}`;
}

/**
 * Reports a batch's failures: each file's line went to `onFailure` as it happened; a single
 * file's error is rethrown as it was, a batch ends with one summary error (non-zero exit).
 */
export function batchError(failures: readonly FileFailure[], total: number, single: UserError | undefined): UserError | undefined {
  if (failures.length === 0) return undefined;
  if (total === 1 && single) return single;
  return new UserError(`${failures.length} of ${total} files failed (see the lines above)`);
}

export async function runTranscribe(
  files: string[], opts: TranscribeCliOptions, onFailure: (f: FileFailure) => void = () => {},
): Promise<TranscribeReport & { error?: UserError }> {
  const language = resolveLanguage(opts.language);
  const progress = progressFor(opts);
  const model = await loadSpeechModel(opts.modelDir, { variant: opts.variant, threads: opts.threads });
  try {
    const results: Transcription[] = [];
    const failures: FileFailure[] = [];
    let last: UserError | undefined;
    for (const [i, file] of files.entries()) {
      progress.update('transcribe', i, files.length);
      try {
        results.push(await transcribeFile(model, file, {
          language, context: opts.context, maxNewTokens: opts.maxNewTokens, maxSegmentSeconds: opts.maxSegmentSeconds,
        }));
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        last = err;
        const failure = { file, error: failureLine(file, err) };
        failures.push(failure);
        // A lone file's error is the command's own one line; in a batch each gets its line now.
        if (files.length > 1) onFailure(failure);
      }
    }
    progress.update('transcribe', files.length, files.length);
    progress.finish();
    const error = batchError(failures, files.length, last);
    return { modelDir: opts.modelDir, layout: model.layout, variant: opts.variant, loadMs: model.loadMs, files: results, failures, ...(error ? { error } : {}) };
  } finally {
    await model.release();
  }
}

/** Writes a batch failure as the CLI's one-line error format. */
export function printFailure(f: FileFailure): void {
  process.stderr.write(`qwen3-onnx: error: ${f.error}\n`);
}

export function formatTranscriptions(report: TranscribeReport): string {
  if (report.files.length === 1 && report.failures.length === 0) return report.files[0].text;
  return report.files.map((f) => `${f.file}: ${f.text}`).join('\n');
}

export function register(program: Command): void {
  program
    .command('transcribe')
    .description('transcribe WAV files with an exported model directory (greedy decoding on onnxruntime)')
    .argument('<files...>', 'WAV files (PCM 8/16/24/32-bit or float; any rate and channel count)')
    .requiredOption('--model-dir <dir>', 'exported model directory')
    .addOption(new Option('--variant <variant>', 'which graphs to load').choices([...VARIANTS]).default('fp32'))
    .option('--language <name>', 'force the output language (e.g. English); default: detect')
    .option('--context <text>', 'context text for the system turn (names, terms) to bias recognition')
    .option('--max-new-tokens <n>', 'stop after this many generated tokens', positiveInt('--max-new-tokens'), DEFAULT_MAX_NEW_TOKENS)
    .option('--max-segment-seconds <s>', `cut longer audio at quiet points into segments of about this length, decoded one by one (${MIN_SEGMENT_SECONDS_FLAG}-${MAX_SEGMENT_SECONDS_FLAG})`,
      secondsOption('--max-segment-seconds', MIN_SEGMENT_SECONDS_FLAG, MAX_SEGMENT_SECONDS_FLAG), DEFAULT_SEGMENT_SECONDS)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', threadsOption())
    .option('--json', 'machine-readable output (tokens, text, language, timings) on stdout')
    .option('--timestamps', 'word start and end times from a forced aligner (needs --aligner; segments at most 180 s)')
    .option('--aligner <dir>', 'exported Qwen3-ForcedAligner directory for --timestamps')
    .addOption(new Option('--aligner-variant <variant>', 'which aligner graphs to load').choices([...VARIANTS]).default('fp32'))
    .action(async (files: string[], opts: TranscribeCliOptions & TimestampOptions) => {
      await checkTimestampOptions(opts);
      const maxSegmentSeconds = timestampSegmentSeconds(opts, opts.maxSegmentSeconds);
      const { error, ...report } = await runTranscribe(files, { ...opts, maxSegmentSeconds }, printFailure);
      // Word times after the ASR model is released, so the two models are never loaded together.
      const timed = opts.timestamps
        ? { ...report, files: report.files.length ? await alignTranscriptions(report.files, opts, maxSegmentSeconds) : [] } : undefined;
      if (!(error && files.length === 1)) {
        emitResult(opts, timed ?? report, () => (timed ? formatTimedTranscriptions(timed.files) : formatTranscriptions(report)));
      }
      if (error) throw error;
    });
}
