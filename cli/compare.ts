import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { UserError } from '../common/errors.js';
import { compareVariants, type CompareReport, type VariantComparison } from '../runtime/compare.js';
import { componentCandidates, type ComponentCandidates } from '../runtime/component-effects.js';
import { DEFAULT_MAX_NEW_TOKENS } from '../runtime/decode.js';
import { resolveLanguage } from '../runtime/prompt.js';
import { emitResult, progressFor, threadsOption, type CommonOptions } from './output.js';
import { positiveInt } from './transcribe.js';

/**
 * `qwen3-onnx compare --model-dir DIR --variants fp32,int4 FILE...`: teacher-forced
 * comparison of model variants (the first is the baseline). Exits non-zero when top-1
 * agreement or mean logit cosine falls below the thresholds, or when a file could not be
 * used: each such file gets one error line as it is met, and the others are still compared.
 */

interface CompareCliOptions extends CommonOptions {
  modelDir: string;
  variants: string[];
  minTop1: number;
  minCosine: number;
  maxNewTokens: number;
  threads?: number;
  language?: string;
  context?: string;
  components?: boolean;
}

function numberIn(flag: string, lo: number, hi: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < lo || n > hi || value.trim() === '') throw new InvalidArgumentError(`${flag} must be a number in [${lo}, ${hi}], got "${value}"`);
    return n;
  };
}

function variantList(value: string): string[] {
  const list = value.split(',').map((v) => v.trim()).filter(Boolean);
  if (list.length < 2) throw new InvalidArgumentError(`--variants needs at least two comma-separated variants, got "${value}"`);
  return list;
}

export function formatComparison(report: CompareReport): string {
  const lines: string[] = [];
  for (const c of report.comparisons) {
    lines.push(`${c.candidate} vs ${c.baseline}: top-1 ${(100 * c.top1Agreement).toFixed(2)}% over ${c.steps} steps, `
      + `cosine mean ${c.meanCosine.toFixed(5)} min ${c.minCosine.toFixed(5)}, greedy agreement ${(100 * c.greedyAgreement).toFixed(2)}% `
      + `${c.passed ? 'PASS' : 'FAIL'}`);
    for (const f of c.files) {
      lines.push(`  ${f.file}: top-1 ${(100 * f.top1Agreement).toFixed(2)}%, cosine ${f.meanCosine.toFixed(5)}, `
        + `first divergence ${f.firstDivergence ?? 'none'}, greedy ${f.greedyIdentical ? 'identical' : `${(100 * f.greedyAgreement).toFixed(2)}%`}`);
    }
  }
  for (const e of report.fileErrors) lines.push(`not compared: ${e.file}`);
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('compare')
    .description('compare model variants on audio: teacher-forced top-1 agreement, logit cosine, greedy token agreement')
    .argument('<files...>', 'WAV files')
    .requiredOption('--model-dir <dir>', 'exported model directory holding the variants')
    .option('--variants <list>', 'comma-separated variants, the first is the baseline', variantList, ['fp32', 'int4'])
    .option('--min-top1 <x>', 'fail below this teacher-forced top-1 agreement', numberIn('--min-top1', 0, 1), 0.9)
    .option('--min-cosine <x>', 'fail below this mean logit cosine similarity', numberIn('--min-cosine', -1, 1), 0.99)
    .option('--max-new-tokens <n>', 'tokens generated per file', positiveInt('--max-new-tokens'), DEFAULT_MAX_NEW_TOKENS)
    .option('--threads <n>', 'onnxruntime intra-op threads', threadsOption())
    .option('--language <name>', 'force the output language')
    .option('--context <text>', 'context text for the system turn')
    .option('--components', 'also each quantised component of the variants alone against fp32 (encoder, token lookup, decoders; reported, not gated)')
    .option('--json', 'machine-readable report on stdout')
    .action(async (files: string[], opts: CompareCliOptions) => {
      const common = {
        modelDir: opts.modelDir, files, maxNewTokens: opts.maxNewTokens,
        threads: opts.threads, language: resolveLanguage(opts.language), context: opts.context,
        minTop1: opts.minTop1, minCosine: opts.minCosine, progress: progressFor(opts),
        onFileError: (_: string, message: string) => process.stderr.write(`qwen3-onnx: error: ${message.split('\n')[0]}\n`),
      };
      // With --components, each quantised component of each variant alone runs on the same baseline.
      if (opts.components && opts.variants[0] !== 'fp32') throw new UserError(`--components: the baseline (first of --variants) must be fp32, got ${opts.variants[0]}`);
      const sets: ComponentCandidates[] = [];
      let report: CompareReport;
      try {
        if (opts.components) for (const v of opts.variants.filter((x) => x !== 'fp32')) sets.push(await componentCandidates(opts.modelDir, v));
        report = await compareVariants({ ...common, variants: opts.variants, ...(opts.components ? { extraCandidates: sets.flatMap((c) => c.candidates) } : {}) });
      } finally {
        for (const c of sets) await c.cleanup();
      }
      const effects: VariantComparison[] = report.extraComparisons ?? [];
      emitResult(opts, opts.components ? { ...report, components: effects } : report,
        () => [formatComparison(report), ...(effects.length ? [formatComparison({ ...report, comparisons: effects, fileErrors: [] })] : [])].join('\n'));
      if (!report.passed) {
        const failures = report.comparisons.flatMap((c) => c.failures);
        if (report.fileErrors.length) failures.push(`compare: ${report.fileErrors.length} of ${files.length} files could not be compared (see the lines above)`);
        throw new UserError(failures.join('; '));
      }
    });
}
