import type { Command } from 'commander';
import { Option } from 'commander';
import { DEFAULT_MAX_NEW_TOKENS, transcribeFile } from '../runtime/decode.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { AsrModel, VARIANTS } from '../runtime/session.js';
import { evaluateWer, readManifest, type WerReport } from '../runtime/wer.js';
import { emitResult, progressFor, type CommonOptions } from './output.js';
import { positiveInt } from './transcribe.js';

/**
 * `qwen3-onnx wer --model-dir DIR --manifest FILE`: word error rate of a model on a manifest of
 * (audio, reference) pairs. Normalisation: see runtime/wer.ts (lower case, accents and
 * punctuation stripped, apostrophes dropped, bracketed annotations and hesitations removed).
 */

interface WerCliOptions extends CommonOptions {
  modelDir: string;
  manifest: string;
  variant: string;
  language?: string;
  context?: string;
  maxNewTokens: number;
  threads?: number;
}

export function formatWer(report: WerReport): string {
  const lines = report.files.map((f) => `${(100 * f.wer).toFixed(2)}%  ${f.audio}  (${f.substitutions} sub, ${f.deletions} del, ${f.insertions} ins / ${f.referenceWords} words)`);
  lines.push(`WER ${(100 * report.wer).toFixed(2)}% (${report.substitutions} sub, ${report.deletions} del, ${report.insertions} ins / ${report.referenceWords} words, ${report.files.length} files)`);
  return lines.join('\n');
}

export async function runWer(opts: WerCliOptions): Promise<WerReport & { modelDir: string; variant: string }> {
  const language = resolveLanguage(opts.language);
  const entries = await readManifest(opts.manifest);
  const progress = progressFor(opts);
  const model = await AsrModel.load(opts.modelDir, { variant: opts.variant, threads: opts.threads });
  try {
    const report = await evaluateWer(
      entries,
      async (audio) => (await transcribeFile(model, audio, { language, context: opts.context, maxNewTokens: opts.maxNewTokens })).text,
      (i) => progress.update('wer', i, entries.length),
    );
    progress.finish();
    return { modelDir: opts.modelDir, variant: opts.variant, ...report };
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
    .option('--threads <n>', 'onnxruntime intra-op threads', positiveInt('--threads'))
    .option('--json', 'machine-readable report on stdout')
    .addHelpText('after', '\nNormalisation before scoring: Unicode NFKD with accents dropped, lower case, [..] and (..) removed,\n'
      + 'apostrophes dropped, other punctuation and symbols -> space, hesitations (uh, um, hmm, ...) removed,\n'
      + 'whitespace collapsed. WER = (sub + del + ins) / reference words; the total pools all files.')
    .action(async (opts: WerCliOptions) => {
      const report = await runWer(opts);
      emitResult(opts, report, () => formatWer(report));
    });
}
