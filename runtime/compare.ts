import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { silentProgress, type Progress } from '../common/progress.js';
import { UserError } from '../common/errors.js';
import type { OutputConfig } from '../model-dir/config.js';
import { loadAudio } from './audio.js';
import { DEFAULT_MAX_NEW_TOKENS } from './decode.js';
import {
  decodeSteps, encodeMel, openOrtGraph, prefill, withGraph,
  type GraphSession, type GraphSessionOptions, type OpenGraph, type Prefilled,
} from './graph-stage.js';
import { logMelSpectrogram, type LogMel } from './mel.js';
import { buildPrompt, type Prompt } from './prompt.js';
import { EmbeddingTable, resolveModelFiles, type ModelFiles, type Variant } from './session.js';
import { Tokenizer } from './tokenizer.js';
import { readModelConfig } from '../model-dir/config.js';
import { graphFileName } from '../model-dir/files.js';
import { detectLayout } from '../model-dir/layout.js';
import { compareSherpaVariants } from './sherpa-compare.js';

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
  /**
   * Bytes of baseline logits rows held before the candidates run on them (default 256 MiB):
   * files are taken in groups of budget / ((maxNewTokens + 1) x vocab x 4 bytes), at least one.
   */
  baselineBudgetBytes?: number;
  progress?: Progress;
  /** Called for each file that cannot be used (unreadable or bad audio); the others still run. */
  onFileError?: (file: string, message: string) => void;
  /** Opens one graph (default: onnxruntime, as AsrModel.load does); tests inject a recording one. */
  openGraph?: OpenGraph;
  /**
   * More candidates run on the same baseline, reported in `extraComparisons` and not gated: a
   * mix of graph files by label (runtime/component-effects.ts: each quantised component alone).
   */
  extraCandidates?: ExtraCandidate[];
}

/** A candidate that is not a variant of the directory: its own graph files and pre-packing. */
export interface ExtraCandidate { label: string; files: ModelFiles; prepack: { encoder: boolean; decoder: boolean } }

/** An audio file left out of the comparison, with its one-line reason. */
export interface FileError { file: string; message: string }

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
  /** The `extraCandidates`' comparisons (absent without them); `passed` does not count them. */
  extraComparisons?: VariantComparison[];
  /** Files left out (the comparison ran on the others); any makes `passed` false. */
  fileErrors: FileError[];
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
 * Runs the comparison. Never throws for failed thresholds or unreadable audio files: the report
 * says `passed` and lists the files it could not use (the CLI turns a failure into a UserError).
 *
 * One graph is resident at a time (a 1.7B fp32 + int4 pair would need ~20 GB together, and
 * even one model's decoder_init and decoder_step each map the whole decoder weights file): for a
 * group of files the baseline runs its encoder on all of them, then decoder_init, then
 * decoder_step, keeping each stage's results in JS and only its logits rows at the end; each
 * candidate then does the same, teacher-forced on those rows, and decodes greedily on its own
 * from the same prefill. Groups are cut so their baseline logits stay under the budget.
 */
export async function compareVariants(opts: CompareOptions): Promise<CompareReport> {
  if (opts.variants.length < 2) throw new UserError('--variants: give at least two variants, e.g. fp32,int4');
  if (new Set(opts.variants).size !== opts.variants.length) throw new UserError(`--variants: duplicate variant in ${opts.variants.join(',')}`);
  if (opts.files.length === 0) throw new UserError('compare: no audio files given');
  if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads > 0)) {
    throw new UserError(`--threads must be a positive integer, got ${opts.threads}`);
  }
  const minTop1 = opts.minTop1 ?? 0.9;
  const minCosine = opts.minCosine ?? 0.99;
  const maxNewTokens = opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const progress = opts.progress ?? silentProgress;
  const open = opts.openGraph ?? openOrtGraph;
  if (await detectLayout(opts.modelDir) === 'sherpa-onnx') return compareSherpaVariants(opts);

  const { config } = await readModelConfig(opts.modelDir);
  const graphs = [
    ...(await Promise.all(opts.variants.map((v) => variantGraphs(opts.modelDir, v, opts.threads)))),
    ...(opts.extraCandidates ?? []).map((c): VariantGraphs => ({
      variant: c.label, files: c.files,
      encoder: { threads: opts.threads, prepack: c.prepack.encoder }, decoder: { threads: opts.threads, prepack: c.prepack.decoder },
    })),
  ];
  const tokenizer = await Tokenizer.load(opts.modelDir);
  const ctx: StageContext = { config, open, maxNewTokens };

  // Upper bound of one file's baseline logits: a row per generated token plus the EOS position.
  const rowsBytes = (maxNewTokens + 1) * config.decoder.vocab_size * 4;
  const groupSize = Math.max(1, Math.floor((opts.baselineBudgetBytes ?? BASELINE_BUDGET) / rowsBytes));
  const perCandidate: FileComparison[][] = graphs.slice(1).map(() => []);
  const fileErrors: FileError[] = [];
  try {
    for (let first = 0; first < opts.files.length; first += groupSize) {
      progress.update('compare files', first, opts.files.length);
      const group = await loadAudioGroup(opts.files.slice(first, first + groupSize), fileErrors, opts.onFileError);
      if (group.length === 0) continue;
      const runs = await runBaseline(ctx, graphs[0], tokenizer, group, opts);
      for (const [ci, candidate] of graphs.slice(1).entries()) perCandidate[ci].push(...await runCandidate(ctx, candidate, runs));
    }
    progress.update('compare files', opts.files.length, opts.files.length);
    const all = graphs.slice(1).map((g, ci) => summariseVariant(opts.variants[0], g.variant, perCandidate[ci], minTop1, minCosine));
    const comparisons = all.slice(0, opts.variants.length - 1);
    return {
      modelDir: opts.modelDir,
      variants: opts.variants,
      thresholds: { minTop1, minCosine },
      comparisons,
      ...(opts.extraCandidates ? { extraComparisons: all.slice(opts.variants.length - 1) } : {}),
      fileErrors,
      passed: fileErrors.length === 0 && comparisons.every((c) => c.passed),
    };
  } finally {
    progress.finish();
  }
}

/** Bytes of baseline logits rows a group of files may hold while the candidates run on them. */
export const BASELINE_BUDGET = 256 * 2 ** 20;

/** One variant's graph files and how each is opened. */
interface VariantGraphs {
  variant: Variant;
  files: ModelFiles;
  encoder: GraphSessionOptions;
  decoder: GraphSessionOptions;
}

/**
 * Float graphs open without weight pre-packing: for a check that decodes a few dozen tokens,
 * their 10x faster load and 2.3x smaller footprint matter more than ~25 % slower steps (a 1.7B
 * fp32 decoder otherwise needs ~16 GB). A quantized variant's own graphs keep packing, without
 * which MatMulNBits is ~30x slower; the float encoder it falls back to does not need it.
 *
 * A variant other than fp32 must have its own decoder graphs (resolveModelFiles refuses it
 * otherwise): falling back to the float ones would compare fp32 with itself and pass.
 */
async function variantGraphs(modelDir: string, variant: Variant, threads: number | undefined): Promise<VariantGraphs> {
  const files = await resolveModelFiles(modelDir, variant);
  const ownEncoder = variant !== 'fp32' && basename(files.encoder) === graphFileName('encoder', variant);
  return { variant, files, encoder: { threads, prepack: ownEncoder }, decoder: { threads, prepack: variant !== 'fp32' } };
}

interface StageContext { config: OutputConfig; open: OpenGraph; maxNewTokens: number }

export interface Audio { file: string; mel: LogMel }

/**
 * The log-mels of one group of files; a file that cannot be read is recorded in `fileErrors` (and
 * reported through `onFileError`) and left out, so the rest are still compared.
 */
export async function loadAudioGroup(
  files: readonly string[], fileErrors: FileError[], onFileError?: (file: string, message: string) => void,
): Promise<Audio[]> {
  const group: Audio[] = [];
  for (const file of files) {
    try {
      group.push({ file, mel: logMelSpectrogram((await loadAudio(file)).samples) });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      fileErrors.push({ file, message: err.message });
      onFileError?.(file, err.message);
    }
  }
  return group;
}

interface BaselineRun extends Audio {
  prompt: Prompt;
  tokens: number[];
  /** The baseline's logits row at every generated position (its tokens plus the EOS/last one). */
  logits: Float32Array[];
}

/** The encoder over every file of the group, then the prefill over every file: one graph open at a time. */
async function encodeAndPrefill(
  ctx: StageContext, g: VariantGraphs, group: readonly Audio[], promptFor: (audio: Audio, features: ort.Tensor) => Prompt,
): Promise<{ prompt: Prompt; start: Prefilled }[]> {
  const hidden = ctx.config.decoder.hidden_size;
  const encoded = await withGraph(ctx.open, g.files.encoder, g.encoder, async (encoder) => {
    const out: { prompt: Prompt; features: ort.Tensor }[] = [];
    for (const audio of group) {
      const features = await encodeMel(encoder, g.files.encoder, audio.mel, hidden);
      out.push({ prompt: promptFor(audio, features), features });
    }
    return out;
  });
  return withGraph(ctx.open, g.files.decoderInit, g.decoder, async (init) => {
    const out: { prompt: Prompt; start: Prefilled }[] = [];
    for (const e of encoded) out.push({ prompt: e.prompt, start: await prefill(init, g.files.decoderInit, e.prompt, e.features) });
    return out;
  });
}

/** Runs `use` with a decoder_step session and the embedding table, both closed afterwards. */
async function withStep<T>(ctx: StageContext, g: VariantGraphs, use: (step: GraphSession, embeddings: EmbeddingTable) => Promise<T>): Promise<T> {
  const embeddings = await EmbeddingTable.open(g.files.embedTokens, ctx.config.embed_tokens_shape, ctx.config.embed_tokens_dtype);
  try {
    return await withGraph(ctx.open, g.files.decoderStep, g.decoder, (step) => use(step, embeddings));
  } finally {
    await embeddings.close();
  }
}

async function runBaseline(ctx: StageContext, g: VariantGraphs, tokenizer: Tokenizer, group: readonly Audio[], opts: CompareOptions): Promise<BaselineRun[]> {
  const prefilled = await encodeAndPrefill(ctx, g, group, (_, features) =>
    buildPrompt(tokenizer, { audioTokens: features.dims[1], context: opts.context, language: opts.language }));
  return withStep(ctx, g, async (step, embeddings) => {
    const runs: BaselineRun[] = [];
    for (const [i, p] of prefilled.entries()) {
      const logits: Float32Array[] = [];
      const { tokens } = await decodeSteps(step, g.files.decoderStep, embeddings, p.start, {
        ...stepOptions(ctx), onLogits: (_, row) => logits.push(row.slice()),
      });
      runs.push({ ...group[i], prompt: p.prompt, tokens, logits });
    }
    return runs;
  });
}

function stepOptions(ctx: StageContext): { maxNewTokens: number; eosTokenIds: number[]; hidden: number } {
  return { maxNewTokens: ctx.maxNewTokens, eosTokenIds: ctx.config.special_tokens.eos_token_ids, hidden: ctx.config.decoder.hidden_size };
}

/**
 * Teacher-forces the candidate on each baseline run's tokens, comparing its logits row with the
 * baseline's at every position, then decodes it greedily on its own from the same prefill.
 */
async function runCandidate(ctx: StageContext, g: VariantGraphs, runs: readonly BaselineRun[]): Promise<FileComparison[]> {
  const prefilled = await encodeAndPrefill(ctx, g, runs, (audio) => (audio as BaselineRun).prompt);
  return withStep(ctx, g, async (step, embeddings) => {
    const out: FileComparison[] = [];
    for (const [i, run] of runs.entries()) {
      const metrics: StepMetrics[] = [];
      await decodeSteps(step, g.files.decoderStep, embeddings, prefilled[i].start, {
        ...stepOptions(ctx),
        maxNewTokens: run.logits.length,
        forcedTokens: [...run.tokens, 0].slice(0, run.logits.length),
        onLogits: (n, row) => {
          const ref = run.logits[n];
          metrics.push({ top1Agree: argmax(ref) === argmax(row), cosine: cosineSimilarity(ref, row) });
        },
      });
      const own = await decodeSteps(step, g.files.decoderStep, embeddings, prefilled[i].start, stepOptions(ctx));
      out.push(summariseFile(run.file, run.tokens, own.tokens, metrics));
    }
    return out;
  });
}

export function summariseFile(file: string, baseTokens: number[], ownTokens: number[], metrics: StepMetrics[]): FileComparison {
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

export function summariseVariant(baseline: Variant, candidate: Variant, files: FileComparison[], minTop1: number, minCosine: number): VariantComparison {
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
