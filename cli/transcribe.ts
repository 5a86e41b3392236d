import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_NEW_TOKENS, transcribeFile, type Transcription } from '../runtime/decode.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { AsrModel, VARIANTS } from '../runtime/session.js';
import { emitResult, intOption, progressFor, type CommonOptions } from './output.js';

/**
 * `qwen3-onnx transcribe --model-dir DIR FILE...`: greedy transcription of WAV files with an
 * exported model directory (onnxruntime on CPU). Prints the text of each file, or with --json
 * the tokens, text, language and timings.
 */

export interface TranscribeCliOptions extends CommonOptions {
  modelDir: string;
  variant: string;
  language?: string;
  context?: string;
  maxNewTokens: number;
  threads?: number;
}

export interface TranscribeReport {
  modelDir: string;
  variant: string;
  loadMs: number;
  files: Transcription[];
}

export function positiveInt(flag: string): (value: string) => number {
  const parse = intOption(flag);
  return (value: string) => {
    const n = parse(value);
    if (n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer, got "${value}"`);
    return n;
  };
}

export async function runTranscribe(files: string[], opts: TranscribeCliOptions): Promise<TranscribeReport> {
  const language = resolveLanguage(opts.language);
  const progress = progressFor(opts);
  const model = await AsrModel.load(opts.modelDir, { variant: opts.variant, threads: opts.threads });
  try {
    const results: Transcription[] = [];
    for (const [i, file] of files.entries()) {
      progress.update('transcribe', i, files.length);
      results.push(await transcribeFile(model, file, { language, context: opts.context, maxNewTokens: opts.maxNewTokens }));
    }
    progress.update('transcribe', files.length, files.length);
    progress.finish();
    return { modelDir: opts.modelDir, variant: opts.variant, loadMs: model.loadMs, files: results };
  } finally {
    await model.release();
  }
}

export function formatTranscriptions(report: TranscribeReport): string {
  if (report.files.length === 1) return report.files[0].text;
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
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', positiveInt('--threads'))
    .option('--json', 'machine-readable output (tokens, text, language, timings) on stdout')
    .action(async (files: string[], opts: TranscribeCliOptions) => {
      const report = await runTranscribe(files, opts);
      emitResult(opts, report, () => formatTranscriptions(report));
    });
}
