import { silentProgress, type Progress } from '../common/progress.js';
import { UserError } from '../common/errors.js';
import { loadAudio } from './audio.js';
import { DEFAULT_MAX_NEW_TOKENS, greedyDecode, runEncoder } from './decode.js';
import { logMelSpectrogram, type LogMel } from './mel.js';
import { buildPrompt, type Prompt } from './prompt.js';
import { AsrModel, type LoadOptions, type Variant } from './session.js';

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
  /** Bytes of baseline logits held before the candidates run on them (default 1 GiB). */
  baselineBudgetBytes?: number;
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

  const perCandidate: FileComparison[][] = opts.variants.slice(1).map(() => []);
  // One model is resident at a time (a 1.7B fp32 + int4 pair would need ~20 GB together):
  // the baseline decodes a group of files and keeps its logits, then each candidate is loaded
  // in turn and teacher-forced on them. Groups are cut at BASELINE_BUDGET bytes of logits.
  let next = 0;
  try {
    while (next < opts.files.length) {
      const group: BaselineRun[] = [];
      let bytes = 0;
      const base = await AsrModel.load(opts.modelDir, loadOptions(opts.variants[0], opts.threads));
      try {
        while (next < opts.files.length && (group.length === 0 || bytes < (opts.baselineBudgetBytes ?? BASELINE_BUDGET))) {
          progress.update('compare files', next, opts.files.length);
          const run = await runBaseline(base, opts.files[next], opts, maxNewTokens);
          bytes += run.logits.reduce((n, row) => n + row.byteLength, 0);
          group.push(run);
          next += 1;
        }
      } finally {
        await base.release();
      }
      for (const [ci, variant] of opts.variants.slice(1).entries()) {
        const model = await AsrModel.load(opts.modelDir, loadOptions(variant, opts.threads));
        try {
          for (const run of group) perCandidate[ci].push(await runCandidate(model, run, maxNewTokens));
        } finally {
          await model.release();
        }
      }
    }
    progress.update('compare files', opts.files.length, opts.files.length);
    const comparisons = opts.variants.slice(1).map((v, ci) => summariseVariant(opts.variants[0], v, perCandidate[ci], minTop1, minCosine));
    return {
      modelDir: opts.modelDir,
      variants: opts.variants,
      thresholds: { minTop1, minCosine },
      comparisons,
      passed: comparisons.every((c) => c.passed),
    };
  } finally {
    progress.finish();
  }
}

/**
 * The float variant loads without weight pre-packing: for a check that decodes a few dozen
 * tokens, its 10x faster load and 2.3x smaller footprint matter more than ~25 % slower steps
 * (a 1.7B build's check otherwise needs ~16 GB for fp32 alone). Quantized variants keep
 * packing, without which MatMulNBits is ~30x slower.
 */
function loadOptions(variant: Variant, threads: number | undefined): LoadOptions {
  return { variant, threads, prepack: variant !== 'fp32' };
}

/** Stored logits of baseline runs held before the candidates are run on them. */
const BASELINE_BUDGET = 1 << 30;

interface BaselineRun {
  file: string;
  mel: LogMel;
  prompt: Prompt;
  tokens: number[];
  /** The baseline's logits row at every generated position (its tokens plus the EOS/last one). */
  logits: Float32Array[];
}

async function runBaseline(base: AsrModel, file: string, opts: CompareOptions, maxNewTokens: number): Promise<BaselineRun> {
  const audio = await loadAudio(file);
  const mel = logMelSpectrogram(audio.samples);
  const features = await runEncoder(base, mel);
  const prompt = buildPrompt(base.tokenizer, { audioTokens: features.dims[1], context: opts.context, language: opts.language });
  const logits: Float32Array[] = [];
  const baseline = await greedyDecode(base, prompt, features, { maxNewTokens, onLogits: (_, row) => logits.push(row.slice()) });
  return { file, mel, prompt, tokens: baseline.tokens, logits };
}

/** Teacher-forces the candidate on the baseline's tokens, then decodes it greedily on its own. */
async function runCandidate(model: AsrModel, run: BaselineRun, maxNewTokens: number): Promise<FileComparison> {
  const features = await runEncoder(model, run.mel);
  const metrics: StepMetrics[] = [];
  await greedyDecode(model, run.prompt, features, {
    maxNewTokens: run.logits.length,
    forcedTokens: [...run.tokens, 0].slice(0, run.logits.length),
    onLogits: (step, row) => {
      const ref = run.logits[step];
      metrics.push({ top1Agree: argmax(ref) === argmax(row), cosine: cosineSimilarity(ref, row) });
    },
  });
  const own = await greedyDecode(model, run.prompt, features, { maxNewTokens });
  return summariseFile(run.file, run.tokens, own.tokens, metrics);
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
