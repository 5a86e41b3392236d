import type { Command } from 'commander';
import { Option } from 'commander';
import { UserError } from '../common/errors.js';
import { DEFAULT_MAX_NEW_TOKENS, transcribeFile } from '../runtime/decode.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { DEFAULT_SEGMENT_SECONDS, MAX_SEGMENT_SECONDS_FLAG, MIN_SEGMENT_SECONDS_FLAG } from '../runtime/segment.js';
import { loadSpeechModel } from '../runtime/load-speech-model.js';
import { VARIANTS } from '../runtime/session.js';
import { evaluateWer, readManifest, type WerReport } from '../runtime/wer.js';
import { emitResult, progressFor, threadsOption, type CommonOptions } from './output.js';
import { batchError, failureLine, positiveInt, printFailure, secondsOption, type FileFailure } from './transcribe.js';

/**
 * `qwen3-onnx wer --model-dir DIR --manifest FILE`: word error rate of a model on a manifest of
 * (audio, reference) pairs. Normalisation: see runtime/wer.ts (lower case, accents and
 * punctuation stripped, apostrophes dropped, bracketed annotations and hesitations removed).
 * An audio file that cannot be read is reported (one line naming it) and left out of the score;
 * the others still run and the command exits non-zero at the end.
 */

interface WerCliOptions extends CommonOptions {
  modelDir: string;
  manifest: string;
  variant: string;
  language?: string;
  context?: string;
  maxNewTokens: number;
  maxSegmentSeconds: number;
  threads?: number;
}

type WerCliReport = WerReport & { modelDir: string; variant: string; failures: FileFailure[] };

export function formatWer(report: WerReport): string {
  const lines = report.files.map((f) => `${(100 * f.wer).toFixed(2)}%  ${f.audio}  (${f.substitutions} sub, ${f.deletions} del, ${f.insertions} ins / ${f.referenceWords} words)`);
  lines.push(`WER ${(100 * report.wer).toFixed(2)}% (${report.substitutions} sub, ${report.deletions} del, ${report.insertions} ins / ${report.referenceWords} words, ${report.files.length} files)`);
  return lines.join('\n');
}

export async function runWer(opts: WerCliOptions, onFailure: (f: FileFailure) => void = () => {}): Promise<WerCliReport & { error?: UserError }> {
  const language = resolveLanguage(opts.language);
  const entries = await readManifest(opts.manifest);
  const progress = progressFor(opts);
  const model = await loadSpeechModel(opts.modelDir, { variant: opts.variant, threads: opts.threads });
  try {
    const failures: FileFailure[] = [];
    let last: UserError | undefined;
    const report = await evaluateWer(
      entries,
      async (audio) => {
        try {
          return (await transcribeFile(model, audio, {
            language, context: opts.context, maxNewTokens: opts.maxNewTokens, maxSegmentSeconds: opts.maxSegmentSeconds,
          })).text;
        } catch (err) {
          if (!(err instanceof UserError)) throw err;
          last = err;
          const failure = { file: audio, error: failureLine(audio, err) };
          failures.push(failure);
          if (entries.length > 1) onFailure(failure);
          return undefined;
        }
      },
      (i) => progress.update('wer', i, entries.length),
    );
    progress.finish();
    const error = batchError(failures, entries.length, last);
    return { modelDir: opts.modelDir, variant: opts.variant, ...report, failures, ...(error ? { error } : {}) };
  } finally {
    await model.release();
  }
}

export function register(program: Command): void {
  program
    .command('wer')
    .description('word error rate of a model on a manifest of (audio, reference text) pairs')
    .requiredOption('--model-dir <dir>', 'exported model directory')
    .requiredOption('--manifest <file>', 'JSON [{"audio", "text" | "text_file"}] or TSV "audio<TAB>text" lines; paths relative to the manifest')
    .addOption(new Option('--variant <variant>', 'which graphs to load').choices([...VARIANTS]).default('fp32'))
    .option('--language <name>', 'force the output language')
    .option('--context <text>', 'context text for the system turn')
    .option('--max-new-tokens <n>', 'tokens generated per file', positiveInt('--max-new-tokens'), DEFAULT_MAX_NEW_TOKENS)
    .option('--max-segment-seconds <s>', `segment length for long audio (${MIN_SEGMENT_SECONDS_FLAG}-${MAX_SEGMENT_SECONDS_FLAG}; see transcribe)`,
      secondsOption('--max-segment-seconds', MIN_SEGMENT_SECONDS_FLAG, MAX_SEGMENT_SECONDS_FLAG), DEFAULT_SEGMENT_SECONDS)
    .option('--threads <n>', 'onnxruntime intra-op threads', threadsOption())
    .option('--json', 'machine-readable report on stdout')
    .addHelpText('after', '\nNormalisation before scoring: Unicode NFKD with accents dropped, lower case, [..] and (..) removed,\n'
      + 'apostrophes dropped, other punctuation and symbols -> space, hesitations (uh, um, hmm, ...) removed,\n'
      + 'whitespace collapsed. WER = (sub + del + ins) / reference words; the total pools all files.')
    .action(async (opts: WerCliOptions) => {
      const { error, ...report } = await runWer(opts, printFailure);
      if (!(error && report.files.length === 0)) emitResult(opts, report, () => formatWer(report));
      if (error) throw error;
    });
}
