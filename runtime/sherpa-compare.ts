import { silentProgress } from '../common/progress.js';
import { UserError } from '../common/errors.js';
import { loadAudio } from './audio.js';
import {
  BASELINE_BUDGET, cosineSimilarity, loadAudioGroup, summariseFile, summariseVariant,
  type Audio, type CompareOptions, type CompareReport, type FileComparison, type FileError, type StepMetrics,
} from './compare.js';
import { DEFAULT_MAX_NEW_TOKENS } from './decode.js';
import { logMelSpectrogram, type LogMel } from './mel.js';
import { buildPrompt, type Prompt } from './prompt.js';
import { readModelConfig } from '../model-dir/config.js';
import { resolveSherpaFiles } from './sherpa-files.js';
import { SherpaAsrModel } from './sherpa-session.js';

/**
 * `compare` on a sherpa-onnx layout directory: the same report as the split layout's
 * (runtime/compare.ts), from SherpaAsrModel. One variant is resident at a time: for a group of
 * files the baseline encodes and decodes each greedily, keeping its logits rows; it is released,
 * and each candidate in turn is loaded, teacher-forced on those rows, decodes greedily on its
 * own, and is released. (The sherpa layout's decoder is one graph for prefill and steps, so a
 * variant is loaded whole instead of one graph at a time.)
 */

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i += 1) if (x[i] > x[best]) best = i;
  return best;
}

interface BaselineRun extends Audio { prompt: Prompt; tokens: number[]; logits: Float32Array[] }

async function withModel<T>(opts: CompareOptions, variant: string, use: (m: SherpaAsrModel) => Promise<T>): Promise<T> {
  // A quantised variant keeps onnxruntime's pre-packing (MatMulNBits is ~30x slower without it); float graphs load without it.
  const model = await SherpaAsrModel.load(opts.modelDir, { variant, threads: opts.threads, prepack: variant !== 'fp32' });
  try { return await use(model); } finally { await model.release(); }
}

export async function compareSherpaVariants(opts: CompareOptions): Promise<CompareReport> {
  const minTop1 = opts.minTop1 ?? 0.9;
  const minCosine = opts.minCosine ?? 0.99;
  const maxNewTokens = opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const progress = opts.progress ?? silentProgress;
  const [baseline, ...candidates] = opts.variants;
  // Every variant's files first, so a missing one is refused before any decoding.
  for (const v of opts.variants) await resolveSherpaFiles(opts.modelDir, v);
  const vocab = (await readModelConfig(opts.modelDir)).config.decoder.vocab_size;
  const groupSize = Math.max(1, Math.floor((opts.baselineBudgetBytes ?? BASELINE_BUDGET) / ((maxNewTokens + 1) * vocab * 4)));
  const perCandidate: FileComparison[][] = candidates.map(() => []);
  const fileErrors: FileError[] = [];
  try {
    for (let first = 0; first < opts.files.length; first += groupSize) {
      progress.update('compare files', first, opts.files.length);
      const group = await loadAudioGroup(opts.files.slice(first, first + groupSize), fileErrors, opts.onFileError);
      if (group.length === 0) continue;
      const runs = await withModel(opts, baseline, async (m) => {
        const out: BaselineRun[] = [];
        for (const audio of group) {
          const encoded = await m.encode(audio.mel);
          const prompt = buildPrompt(m.tokenizer, { audioTokens: encoded.audioTokens, context: opts.context, language: opts.language });
          const logits: Float32Array[] = [];
          const { tokens } = await m.decode(prompt, encoded, { maxNewTokens, onLogits: (_, row) => logits.push(row.slice()) });
          out.push({ ...audio, prompt, tokens, logits });
        }
        return out;
      });
      for (const [ci, candidate] of candidates.entries()) {
        perCandidate[ci].push(...await withModel(opts, candidate, async (m) => {
          const out: FileComparison[] = [];
          for (const run of runs) {
            const encoded = await m.encode(run.mel);
            const metrics: StepMetrics[] = [];
            await m.decode(run.prompt, encoded, {
              maxNewTokens: run.logits.length,
              forcedTokens: [...run.tokens, 0].slice(0, run.logits.length),
              onLogits: (n, row) => {
                const ref = run.logits[n];
                metrics.push({ top1Agree: argmax(ref) === argmax(row), cosine: cosineSimilarity(ref, row) });
              },
            });
            const own = await m.decode(run.prompt, encoded, { maxNewTokens });
            out.push(summariseFile(run.file, run.tokens, own.tokens, metrics));
          }
          return out;
        }));
      }
    }
    progress.update('compare files', opts.files.length, opts.files.length);
    const comparisons = candidates.map((v, ci) => summariseVariant(baseline, v, perCandidate[ci], minTop1, minCosine));
    return {
      modelDir: opts.modelDir,
      variants: opts.variants,
      thresholds: { minTop1, minCosine },
      comparisons,
      fileErrors,
      passed: fileErrors.length === 0 && comparisons.every((c) => c.passed),
    };
  } finally {
    progress.finish();
  }
}
