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
import { CONFIG_FILE, graphFileName, weightsFileName } from '../model-dir/files.js';

/**
 * `quantize` on a model directory (shared/CONTRACT.md): reads decoder_init.onnx and
 * decoder_step.onnx (float, sharing decoder_weights.data), writes decoder_init.int4.onnx,
 * decoder_step.int4.onnx and decoder_weights.int4.data beside them (int8: `.int8.`), and records
 * the recipe in config.json under `quantization`. The encoder is neither touched nor copied.
 */

export const DECODER_GRAPHS = ['decoder_init', 'decoder_step'] as const;

export interface QuantizeDirOptions {
  modelDir: string;
  bits: 4 | 8;
  blockSize: number;
  accuracyLevel: number;
  symmetric: boolean;
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
  threads?: number;
  progress?: Progress;
}

export interface QuantizeDirResult {
  modelDir: string;
  variant: string;
  recipe: string;
  files: string[];
  report: TransformReport;
  /** What AWQ smoothing did (with `awq`). */
  awq?: SmoothReport;
}

/**
 * The defaults of the CLI (int4 RTN, block 64, accuracy_level 4, asymmetric, RMSNorm fused).
 * SkipSimplifiedLayerNormalization stays off: it measured no faster (investigation entries 5, 11, 18).
 * Packing sibling projections is on: identical outputs, faster steps (entry 18).
 */
export const QUANTIZE_DEFAULTS = { bits: 4, blockSize: 64, accuracyLevel: 4, symmetric: false, fuse: true, skipFusion: false, pack: true } as const;

export function recipeName(o: Pick<QuantizeDirOptions, 'bits' | 'blockSize' | 'accuracyLevel' | 'symmetric'> & { awq?: Pick<AwqOptions, 'alpha'> }): string {
  return `int${o.bits}${o.awq ? `_awq${o.awq.alpha}` : ''}_rtn_block${o.blockSize}_al${o.accuracyLevel}${o.symmetric ? '_sym' : ''}`;
}

export function validateQuantizeOptions(o: Pick<QuantizeDirOptions, 'bits' | 'blockSize' | 'accuracyLevel'>): void {
  if (o.bits !== 4 && o.bits !== 8) throw new UserError(`--bits must be 4 or 8, got ${o.bits}`);
  // onnxruntime's MatMulNBits needs a power of two >= 16; its fast CPU kernels (MLAS) stop at 256.
  if (!Number.isInteger(o.blockSize) || o.blockSize < 16 || o.blockSize > 256 || (o.blockSize & (o.blockSize - 1)) !== 0) {
    throw new UserError(`--block-size must be a power of two >= 16 and <= 256 (MatMulNBits), got ${o.blockSize}`);
  }
  if (!Number.isInteger(o.accuracyLevel) || o.accuracyLevel < 0 || o.accuracyLevel > 4) {
    throw new UserError(`--accuracy-level must be 0..4, got ${o.accuracyLevel}`);
  }
}

export async function quantizeModelDir(o: QuantizeDirOptions): Promise<QuantizeDirResult> {
  validateQuantizeOptions(o);
  const dir = resolve(o.modelDir);
  const variant = `int${o.bits}`;
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

async function quantizeLocked(o: QuantizeDirOptions, dir: string, variant: string, configPath: string): Promise<QuantizeDirResult> {
  const { configText, raw } = await readConfig(configPath);

  for (const g of DECODER_GRAPHS) {
    const p = join(dir, graphFileName(g));
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
  const recipe = recipeName(o);
  try {
    staged = await StagedFiles.create(dir, `quantize-${variant}`);
    const dataFile = staged.fileFor(weightsFileName('decoder', variant));
    // AWQ: quantise smoothed float copies (temp files beside the originals) instead of the originals.
    smoothed = o.awq ? await smoothForQuantize(dir, DECODER_GRAPHS, o.awq, o.progress) : null;
    const sources = smoothed?.sources;
    report = await transformGraphs({
      graphs: DECODER_GRAPHS.map((g) => ({ src: sources?.[g] ?? join(dir, graphFileName(g)), dst: staged!.fileFor(graphFileName(g, variant)) })),
      dataFile,
      fuse: o.fuse,
      skipFusion: o.fuse && o.skipFusion,
      pack: o.pack ?? QUANTIZE_DEFAULTS.pack,
      quantize: { bits: o.bits, blockSize: o.blockSize, accuracyLevel: o.accuracyLevel, symmetric: o.symmetric, exclude: o.exclude },
      threads: o.threads,
      progress: o.progress,
    });
    awqReport = smoothed?.report;
    await smoothed?.cleanup();
    smoothed = null;

    const previous = (raw.quantization && typeof raw.quantization === 'object' ? raw.quantization : {}) as Record<string, string>;
    const merged: Record<string, string> = { ...previous };
    // int4 keys are the bare graph names (CONTRACT.md); other widths name their variant.
    for (const g of DECODER_GRAPHS) merged[o.bits === 4 ? g : `${g}.${variant}`] = recipe;
    raw.quantization = Object.fromEntries(Object.keys(merged).sort().map((k) => [k, merged[k]]));
    const text = `${JSON.stringify(raw, null, 2)}\n`;
    if (!OutputConfigSchema.safeParse(JSON.parse(text)).success) throw new Error('config.json no longer validates after adding quantization');
    if (text !== configText) await writeFileAtomic(staged.fileFor(CONFIG_FILE), text);
    await staged.commit();
    // Report where the files are now, not where they were staged.
    const final = (p: string): string => join(dir, basename(p));
    report = { ...report, graphs: report.graphs.map((g) => ({ ...g, dst: final(g.dst) })), data: { ...report.data, file: final(report.data.file) } };
  } catch (err) {
    await smoothed?.cleanup();
    await staged?.abort();
    throw err;
  }

  return {
    modelDir: dir,
    variant,
    recipe,
    files: [...DECODER_GRAPHS.map((g) => graphFileName(g, variant)), weightsFileName('decoder', variant), CONFIG_FILE],
    report,
    ...(awqReport ? { awq: awqReport } : {}),
  };
}
