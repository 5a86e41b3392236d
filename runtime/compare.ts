import { silentProgress, type Progress } from '../common/progress.js';
import { UserError } from '../common/errors.js';
import { loadAudio } from './audio.js';
import { DEFAULT_MAX_NEW_TOKENS, greedyDecode, runEncoder } from './decode.js';
import { logMelSpectrogram } from './mel.js';
import { buildPrompt } from './prompt.js';
import { AsrModel, type Variant } from './session.js';

/**
 * Compares model variants (e.g. fp32 vs int4) on audio files. The first variant is the
 * baseline: its greedy tokens are fed to every other variant (teacher forcing), and at each
 * generated position the two logits rows are compared (top-1 agreement, cosine similarity,
 * first step whose top-1 differs). Each other variant is also decoded greedily on its own
 * and its tokens compared with the baseline's.
 */

export interface CompareOptions {
  modelDir: string;
  /** At least two; the first is the baseline. */
  variants: Variant[];
  files: string[];
  maxNewTokens?: number;
  threads?: number;
  language?: string;
  context?: string;
  /** Pass thresholds on the pooled teacher-forced metrics (defaults 0.9 and 0.99). */
  minTop1?: number;
  minCosine?: number;
  progress?: Progress;
}

export interface StepMetrics { top1Agree: boolean; cosine: number }

export interface FileComparison {
  file: string;
  /** Baseline greedy tokens (the teacher-forced sequence). */
  baselineTokens: number[];
  candidateTokens: number[];
  steps: number;
  top1Agreement: number;
  meanCosine: number;
  minCosine: number;
  /** First step whose top-1 differs from the baseline's, or null. */
  firstDivergence: number | null;
  /** Equal greedy tokens at the same position, over the longer of the two sequences (1 = identical). */
  greedyAgreement: number;
  greedyIdentical: boolean;
}

export interface VariantComparison {
  baseline: Variant;
  candidate: Variant;
  files: FileComparison[];
  /** Pooled over all steps of all files. */
  steps: number;
  top1Agreement: number;
  meanCosine: number;
  minCosine: number;
  greedyAgreement: number;
  passed: boolean;
  /** Why it failed, one line each. */
  failures: string[];
}

export interface CompareReport {
  modelDir: string;
  variants: Variant[];
  thresholds: { minTop1: number; minCosine: number };
  comparisons: VariantComparison[];
  passed: boolean;
}

export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  if (na === 0 && nb === 0) return 1;
  if (na === 0 || nb === 0) return 0;
  return dot / Math.sqrt(na * nb);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i += 1) if (x[i] > x[best]) best = i;
  return best;
}

export function greedyAgreement(a: readonly number[], b: readonly number[]): number {
  const longest = Math.max(a.length, b.length);
  if (longest === 0) return 1;
  let same = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) if (a[i] === b[i]) same += 1;
  return same / longest;
}

/**
 * Runs the comparison. Never throws for failed thresholds: the report says `passed`
 * (the CLI turns a failure into a UserError).
 */
export async function compareVariants(opts: CompareOptions): Promise<CompareReport> {
  if (opts.variants.length < 2) throw new UserError('--variants: give at least two variants, e.g. fp32,int4');
  if (new Set(opts.variants).size !== opts.variants.length) throw new UserError(`--variants: duplicate variant in ${opts.variants.join(',')}`);
  if (opts.files.length === 0) throw new UserError('compare: no audio files given');
  const minTop1 = opts.minTop1 ?? 0.9;
  const minCosine = opts.minCosine ?? 0.99;
  const maxNewTokens = opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const progress = opts.progress ?? silentProgress;

  const models: AsrModel[] = [];
  try {
    for (const v of opts.variants) models.push(await AsrModel.load(opts.modelDir, { variant: v, threads: opts.threads }));
    const [base, ...others] = models;
    const perCandidate: FileComparison[][] = others.map(() => []);
    for (const [fi, file] of opts.files.entries()) {
      progress.update('compare files', fi, opts.files.length);
      const audio = await loadAudio(file);
      const mel = logMelSpectrogram(audio.samples);
      const baseFeatures = await runEncoder(base, mel);
      const prompt = buildPrompt(base.tokenizer, { audioTokens: baseFeatures.dims[1], context: opts.context, language: opts.language });
      const baseLogits: Float32Array[] = [];
      const baseline = await greedyDecode(base, prompt, baseFeatures, {
        maxNewTokens, onLogits: (_, row) => baseLogits.push(row.slice()),
      });
      // Compare over every baseline prediction: its tokens plus the EOS (or last) position.
      for (const [ci, model] of others.entries()) {
        const features = await runEncoder(model, mel);
        const metrics: StepMetrics[] = [];
        await greedyDecode(model, prompt, features, {
          maxNewTokens: baseLogits.length,
          forcedTokens: [...baseline.tokens, 0].slice(0, baseLogits.length),
          onLogits: (step, row) => {
            const ref = baseLogits[step];
            metrics.push({ top1Agree: argmax(ref) === argmax(row), cosine: cosineSimilarity(ref, row) });
          },
        });
        const own = await greedyDecode(model, prompt, features, { maxNewTokens });
        perCandidate[ci].push(summariseFile(file, baseline.tokens, own.tokens, metrics));
      }
    }
    progress.update('compare files', opts.files.length, opts.files.length);
    const comparisons = others.map((m, ci) => summariseVariant(opts.variants[0], m.variant, perCandidate[ci], minTop1, minCosine));
    return {
      modelDir: opts.modelDir,
      variants: opts.variants,
      thresholds: { minTop1, minCosine },
      comparisons,
      passed: comparisons.every((c) => c.passed),
    };
  } finally {
    progress.finish();
    for (const m of models) await m.release();
  }
}

function summariseFile(file: string, baseTokens: number[], ownTokens: number[], metrics: StepMetrics[]): FileComparison {
  const steps = metrics.length;
  const agree = metrics.filter((m) => m.top1Agree).length;
  const cos = metrics.map((m) => m.cosine);
  const diverge = metrics.findIndex((m) => !m.top1Agree);
  return {
    file,
    baselineTokens: baseTokens,
    candidateTokens: ownTokens,
    steps,
    top1Agreement: steps ? agree / steps : 1,
    meanCosine: steps ? cos.reduce((a, b) => a + b, 0) / steps : 1,
    minCosine: steps ? Math.min(...cos) : 1,
    firstDivergence: diverge < 0 ? null : diverge,
    greedyAgreement: greedyAgreement(baseTokens, ownTokens),
    greedyIdentical: baseTokens.length === ownTokens.length && baseTokens.every((t, i) => t === ownTokens[i]),
  };
}

function summariseVariant(baseline: Variant, candidate: Variant, files: FileComparison[], minTop1: number, minCosine: number): VariantComparison {
  const steps = files.reduce((n, f) => n + f.steps, 0);
  const weighted = (get: (f: FileComparison) => number): number =>
    steps ? files.reduce((s, f) => s + get(f) * f.steps, 0) / steps : 1;
  const top1Agreement = weighted((f) => f.top1Agreement);
  const meanCosine = weighted((f) => f.meanCosine);
  const failures: string[] = [];
  if (top1Agreement < minTop1) failures.push(`${candidate} vs ${baseline}: top-1 agreement ${top1Agreement.toFixed(4)} < ${minTop1}`);
  if (meanCosine < minCosine) failures.push(`${candidate} vs ${baseline}: mean logit cosine ${meanCosine.toFixed(4)} < ${minCosine}`);
  return {
    baseline,
    candidate,
    files,
    steps,
    top1Agreement,
    meanCosine,
    minCosine: files.length ? Math.min(...files.map((f) => f.minCosine)) : 1,
    greedyAgreement: files.length ? files.reduce((s, f) => s + f.greedyAgreement, 0) / files.length : 1,
    passed: failures.length === 0,
    failures,
  };
}
