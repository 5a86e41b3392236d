import { access, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { writeFileAtomic } from '../common/atomic.js';
import { acquireDirLock } from '../common/dir-lock.js';
import { StagedFiles } from '../common/staging.js';
import { UserError, fsError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { describeZodError } from '../checkpoint/config.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { smoothForQuantize, type AwqOptions } from './awq.js';
import type { SmoothReport } from './smooth.js';
import { transformGraphs, type TransformReport } from './transform.js';
import { CONFIG_FILE } from '../model-dir/files.js';
import { detectLayout, quantizeFilePlan } from '../model-dir/layout.js';
import {
  describeRecipe, embeddingSpecName, recipeEmbedding, recipeSelector, recipeVariant, resolveRecipe, sharesTable, specName,
  type PresetName, type Recipe,
} from './recipe.js';
import { rm } from 'node:fs/promises';
import { modelDirKind } from '../model-dir/aligner.js';
import { quantizeAlignerDir } from './aligner.js';

/**
 * `quantize` on a model directory (shared/CONTRACT.md): reads decoder_init.onnx and
 * decoder_step.onnx (float, sharing decoder_weights.data), writes decoder_init.int4.onnx,
 * decoder_step.int4.onnx and decoder_weights.int4.data beside them (int8: `.int8.`), and records
 * the recipe in config.json under `quantization`. With a recipe that quantises the encoder
 * (quantize/recipe.ts, preset `whole`) it also writes encoder.int4.onnx + encoder_weights.int4.data;
 * otherwise the encoder is neither touched nor copied (and a stale quantised encoder of the same
 * variant is removed, so the directory holds one recipe per variant).
 */

export const DECODER_GRAPHS = ['decoder_init', 'decoder_step'] as const;

export interface QuantizeDirOptions {
  modelDir: string;
  bits: 4 | 8;
  /** Unset: the model kind's default (QUANTIZE_DEFAULTS.blockSize; a forced aligner's ALIGNER_BLOCK_SIZE). */
  blockSize?: number;
  accuracyLevel: number;
  symmetric: boolean;
  /** Search each block's clipping range (quantize/rtn.ts `clip`) for the preset's quantised components. */
  clip?: boolean;
  exclude: string[];
  /** RMSNorm fusion before quantising (default on). */
  fuse: boolean;
  /** Residual Add folding into SkipSimplifiedLayerNormalization (investigation/INVESTIGATION.md). */
  skipFusion: boolean;
  /**
   * Pack sibling projections (q|k|v, gate|up) into one MatMulNBits each (quantize/pack-projections.ts):
   * same values, fewer and wider kernel calls (investigation entry 18). Default on.
   */
  pack?: boolean;
  /** AWQ smoothing from calibrate's stats.json before rounding (calibrate/awq.ts). */
  awq?: AwqOptions;
  /**
   * Which components are quantised (quantize/recipe.ts; default `decoders`, the recipe before
   * presets). `bits`, `blockSize`, `accuracyLevel` and `symmetric` set its quantised components.
   */
  preset?: PresetName;
  /** Per-component specs over the preset: `{ encoder: 'int8', embedding: 'fp32', ... }`. */
  overrides?: Readonly<Record<string, string>>;
  /** Conv weights of at least this many bytes stored as bfloat16 when exact (transform.ts; default 1 MiB; tests lower it). */
  bf16ConvMinBytes?: number | null;
  /** How the lookup and the lm_head name their shared table (gather-block-quantized.ts; default 'range'). */
  share?: 'range' | 'reshape';
  threads?: number;
  progress?: Progress;
}

export interface QuantizeDirResult {
  modelDir: string;
  variant: string;
  /** The decoders' recipe name (as config.json's decoder_init / decoder_step state it). */
  recipe: string;
  /** The whole recipe, per component. */
  components: Recipe;
  /** config.json's `quantization` entries this run wrote (keys without the variant suffix). */
  stated: Record<string, string>;
  /** Whether the token lookup reads the lm_head's table (one copy on disk). */
  sharedEmbedding: boolean;
  files: string[];
  report: TransformReport;
  /** The encoder's transform, when the recipe quantises it. */
  encoder?: TransformReport;
  /** What AWQ smoothing did (with `awq`). */
  awq?: SmoothReport;
}

/**
 * The defaults of the CLI (int4 RTN, block 64, accuracy_level 4, asymmetric, RMSNorm fused).
 * SkipSimplifiedLayerNormalization stays off: it measured no faster (investigation entries 5, 11, 18).
 * Packing sibling projections is on: identical outputs, faster steps (entry 18).
 */
export const QUANTIZE_DEFAULTS = { bits: 4, blockSize: 64, accuracyLevel: 4, symmetric: false, clip: false, fuse: true, skipFusion: false, pack: true } as const;

export function recipeName(o: Pick<QuantizeDirOptions, 'bits' | 'blockSize' | 'accuracyLevel' | 'symmetric' | 'clip'> & { awq?: Pick<AwqOptions, 'alpha'> }): string {
  return `int${o.bits}${o.awq ? `_awq${o.awq.alpha}` : ''}_rtn_block${o.blockSize}_al${o.accuracyLevel}${o.symmetric ? '_sym' : ''}${o.clip ? '_clip' : ''}`;
}

export function validateQuantizeOptions(o: Pick<QuantizeDirOptions, 'bits' | 'blockSize' | 'accuracyLevel'>): void {
  if (o.bits !== 4 && o.bits !== 8) throw new UserError(`--bits must be 4 or 8, got ${o.bits}`);
  // onnxruntime's MatMulNBits needs a power of two >= 16; its fast CPU kernels (MLAS) stop at 256.
  const b = o.blockSize;
  if (b !== undefined && (!Number.isInteger(b) || b < 16 || b > 256 || (b & (b - 1)) !== 0)) {
    throw new UserError(`--block-size must be a power of two >= 16 and <= 256 (MatMulNBits), got ${o.blockSize}`);
  }
  if (!Number.isInteger(o.accuracyLevel) || o.accuracyLevel < 0 || o.accuracyLevel > 4) {
    throw new UserError(`--accuracy-level must be 0..4, got ${o.accuracyLevel}`);
  }
}

export async function quantizeModelDir(o: QuantizeDirOptions): Promise<QuantizeDirResult> {
  validateQuantizeOptions(o);
  // A forced-aligner directory has its own graphs and default recipe (quantize/aligner.ts).
  if ((await modelDirKind(resolve(o.modelDir)).catch(() => 'asr')) === 'forced_aligner') return quantizeAlignerDir(o);
  const dir = resolve(o.modelDir);
  const variant = recipeVariant(recipeOf(o));
  const configPath = join(dir, CONFIG_FILE);
  await readConfig(configPath); // cheap checks before taking the lock
  // One writer at a time: config.json is read again under the lock, so no other run's recipe is lost.
  const lock = await acquireDirLock(dir, 'quantize');
  try {
    return await quantizeLocked(o, dir, variant, configPath);
  } finally {
    await lock.release();
  }
}

/**
 * config.json, validated, as text and parsed: the recipe is added to the parsed text (not zod's
 * output) so key order, and with it the file's bytes, stay as the exporter wrote them.
 */
async function readConfig(configPath: string): Promise<{ configText: string; raw: Record<string, unknown> }> {
  let configText: string;
  try {
    configText = await readFile(configPath, 'utf8');
  } catch (err) {
    throw fsError('cannot read', configPath, err);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(configText) as Record<string, unknown>;
  } catch (err) {
    throw new UserError(`${configPath}: not valid JSON (${(err as Error).message})`);
  }
  const checked = OutputConfigSchema.safeParse(raw);
  if (!checked.success) throw new UserError(`${configPath}: ${describeZodError(checked.error)}`);

  return { configText, raw };
}

/** The options' recipe: the preset (default `decoders`) over the base spec, with the overrides. */
export function recipeOf(o: Pick<QuantizeDirOptions, 'bits' | 'blockSize' | 'accuracyLevel' | 'symmetric' | 'clip' | 'preset' | 'overrides'>): Recipe {
  return resolveRecipe(o.preset ?? 'decoders', o.overrides ?? {}, { bits: o.bits, blockSize: o.blockSize ?? QUANTIZE_DEFAULTS.blockSize, accuracyLevel: o.accuracyLevel, symmetric: o.symmetric, clip: o.clip ?? false });
}

/** config.json's statement of a recipe (keys as for int4; other variants get a `.<variant>` suffix). */
export function statedRecipe(
  r: Recipe, awqAlpha?: number, decoderGraphs: readonly string[] = ['decoder_init', 'decoder_step'],
): Record<string, string> {
  const decoder = specName(r.decoder, awqAlpha);
  return {
    ...Object.fromEntries(decoderGraphs.map((g) => [g, decoder])),
    embedding: embeddingSpecName(r.embedding, awqAlpha), encoder: specName(r.encoder),
    lm_head: specName(r.lm_head, awqAlpha), preset: r.preset,
  };
}

/** An exclude pattern must match something in one of the graphs a run rewrote. */
export function assertExcludesMatched(exclude: readonly string[], graphs: readonly TransformReport['graphs'][number][]): void {
  exclude.forEach((pattern, i) => {
    if (!graphs.some((g) => (g.quantization?.excludeHits[i] ?? 0) > 0)) {
      throw new UserError(`--exclude ${pattern} matches no quantisable MatMul/Gemm node or weight name`);
    }
  });
}

/**
 * config.json's text with `stated` as `variant`'s recipe: int4 keys are the bare names (CONTRACT.md),
 * other widths name their variant; this run's recipe replaces every entry of its variant (one recipe
 * per variant). Keys sorted; the result is validated.
 */
export function configWithRecipe(raw: Record<string, unknown>, stated: Record<string, string>, variant: string): string {
  const previous = (raw.quantization && typeof raw.quantization === 'object' ? raw.quantization : {}) as Record<string, string>;
  const ofVariant = (k: string): boolean => (variant === 'int4' ? !k.includes('.') : k.endsWith(`.${variant}`));
  const merged: Record<string, string> = Object.fromEntries(Object.entries(previous).filter(([k]) => !ofVariant(k)));
  for (const [k, v] of Object.entries(stated)) merged[variant === 'int4' ? k : `${k}.${variant}`] = v;
  raw.quantization = Object.fromEntries(Object.keys(merged).sort().map((k) => [k, merged[k]]));
  const text = `${JSON.stringify(raw, null, 2)}\n`;
  if (!OutputConfigSchema.safeParse(JSON.parse(text)).success) throw new Error('config.json no longer validates after adding quantization');
  return text;
}

async function quantizeLocked(o: QuantizeDirOptions, dir: string, variant: string, configPath: string): Promise<QuantizeDirResult> {
  const { configText, raw } = await readConfig(configPath);
  const components = recipeOf(o);
  const quantizeEncoder = components.encoder.precision !== 'fp32';
  // Which files of this directory's layout (split or sherpa-onnx) are read and written.
  const plan = quantizeFilePlan(await detectLayout(dir));
  if (quantizeEncoder) {
    for (const e of plan.encoders) {
      const p = join(dir, e.float);
      try { await access(p); } catch (err) { throw fsError('cannot read', p, err); }
    }
  }

  for (const g of plan.decoders.map((d) => d.float)) {
    const p = join(dir, g);
    try {
      await access(p);
    } catch (err) {
      throw fsError('cannot read', p, err);
    }
  }
  // The variant's graphs, weights and config recipe appear together or not at all: they are
  // written into a staging folder inside the model directory and renamed in only once complete
  // (common/staging.ts).
  let staged: StagedFiles | undefined;
  let report: TransformReport;
  let smoothed: Awaited<ReturnType<typeof smoothForQuantize>> | null = null;
  let awqReport: SmoothReport | undefined;
  const recipe = specName(components.decoder, o.awq?.alpha);
  const stated = statedRecipe(components, o.awq?.alpha, plan.decoders.map((d) => d.graph));
  const tied = Boolean((raw.decoder as { tie_word_embeddings?: unknown } | undefined)?.tie_word_embeddings);
  const select = recipeSelector(components);
  const nbits = { bits: o.bits, blockSize: o.blockSize ?? QUANTIZE_DEFAULTS.blockSize, accuracyLevel: o.accuracyLevel, symmetric: o.symmetric, ...(o.clip ? { clip: true } : {}), exclude: o.exclude };
  const encoderReports: TransformReport[] = [];
  try {
    staged = await StagedFiles.create(dir, `quantize-${variant}`);
    const dataFile = staged.fileFor(plan.decoderData(variant));
    // AWQ: quantise smoothed float copies (temp files beside the originals) instead of the originals.
    smoothed = o.awq ? await smoothForQuantize(dir, plan.decoders.map((d) => ({ name: d.graph, file: d.float })), o.awq, o.progress) : null;
    const sources = smoothed?.sources;
    report = await transformGraphs({
      graphs: plan.decoders.map((g) => ({ src: sources?.[g.graph] ?? join(dir, g.float), dst: staged!.fileFor(g.variant(variant)) })),
      dataFile,
      fuse: o.fuse,
      skipFusion: o.fuse && o.skipFusion,
      pack: o.pack ?? QUANTIZE_DEFAULTS.pack,
      quantize: nbits,
      select,
      embedding: recipeEmbedding(components, o.share),
      excludeMustMatch: false,
      threads: o.threads,
      progress: o.progress,
    });
    awqReport = smoothed?.report;
    await smoothed?.cleanup();
    smoothed = null;
    if (quantizeEncoder) {
      for (const e of plan.encoders) {
        encoderReports.push(await transformGraphs({
          graphs: [{ src: join(dir, e.float), dst: staged.fileFor(e.variant(variant)) }],
          dataFile: staged.fileFor(e.data(variant)),
          fuse: false, skipFusion: false, pack: o.pack ?? QUANTIZE_DEFAULTS.pack,
          quantize: nbits, select, excludeMustMatch: false, threads: o.threads, progress: o.progress,
          ...(o.bf16ConvMinBytes !== undefined ? { bf16ConvMinBytes: o.bf16ConvMinBytes } : {}),
        }));
      }
    }
    assertExcludesMatched(o.exclude, [...report.graphs, ...encoderReports.flatMap((r) => r.graphs)]);
    const text = configWithRecipe(raw, stated, variant);
    if (text !== configText) await writeFileAtomic(staged.fileFor(CONFIG_FILE), text);
    await staged.commit();
    // Report where the files are now, not where they were staged.
    const final = (p: string): string => join(dir, basename(p));
    report = { ...report, graphs: report.graphs.map((g) => ({ ...g, dst: final(g.dst) })), data: { ...report.data, file: final(report.data.file) } };
    if (encoderReports.length > 0) {
      for (let i = 0; i < encoderReports.length; i++) {
        const r = encoderReports[i];
        encoderReports[i] = { ...r, graphs: r.graphs.map((g) => ({ ...g, dst: final(g.dst) })), data: { ...r.data, file: final(r.data.file) } };
      }
    } else {
      // A float encoder in this recipe: the variant's quantised encoder of an earlier recipe goes
      // (after the commit, so a failed run leaves the earlier recipe whole).
      for (const e of plan.encoders) {
        await rm(join(dir, e.variant(variant)), { force: true });
        await rm(join(dir, e.data(variant)), { force: true });
      }
    }
  } catch (err) {
    await smoothed?.cleanup();
    await staged?.abort();
    throw err;
  }

  return {
    modelDir: dir,
    variant,
    recipe,
    components,
    stated,
    sharedEmbedding: sharesTable(components, tied),
    files: [
      ...(encoderReports.length > 0 ? plan.encoders.flatMap((e) => [e.variant(variant), e.data(variant)]) : []),
      ...plan.decoders.map((g) => g.variant(variant)), plan.decoderData(variant), CONFIG_FILE,
    ],
    report,
    // The encoder graph's transform (the last encoder-side graph: encoder.onnx in both layouts).
    ...(encoderReports.length > 0 ? { encoder: encoderReports[encoderReports.length - 1] } : {}),
    ...(awqReport ? { awq: awqReport } : {}),
  };
}
