import { access, readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { writeFileAtomic } from '../common/atomic.js';
import { acquireDirLock } from '../common/dir-lock.js';
import { UserError, fsError } from '../common/errors.js';
import { StagedFiles } from '../common/staging.js';
import { describeZodError } from '../checkpoint/config.js';
import { alignerGraphFileName, alignerWeightsFileName } from '../model-dir/aligner.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { CONFIG_FILE } from '../model-dir/files.js';
import { assertExcludesMatched, configWithRecipe, type QuantizeDirOptions, type QuantizeDirResult } from './model-dir.js';
import {
  embeddingSpecName, recipeEmbedding, recipeSelector, recipeVariant, resolveRecipe, specName, type Recipe,
} from './recipe.js';
import { transformGraphs, type TransformReport } from './transform.js';

/**
 * `quantize` on a forced-aligner model directory (model-dir/aligner.ts; quantizeModelDir hands such a
 * directory here): the whole model by default, as issue 16 asks:
 *   encoder.onnx          -> encoder.<v>.onnx + encoder_weights.<v>.data     (MatMulNBits on every linear)
 *   aligner_decoder.onnx  -> aligner_decoder.<v>.onnx + aligner_weights.<v>.data
 *                            (MatMulNBits on every decoder linear, the untied 152064-row lookup as
 *                            GatherBlockQuantized, the head as ALIGNER_HEAD_DEFAULT says)
 * and the recipe in config.json's `quantization` (keys aligner_decoder, embedding, encoder, lm_head,
 * preset; `.<v>` suffixed for variants other than int4). Files appear together or not at all.
 *
 * The recipe components (quantize/recipe.ts) apply as they do to the ASR graphs: `encoder` the
 * audio tower, `decoder` the text layers, `embedding` the token lookup, `lm_head` the timestamp head.
 */

/**
 * The head's default precision: int8 (accuracy level 4). Measured on the tiny aligner
 * (quantize/aligner.test.ts, investigation/INVESTIGATION.md): with the rest of the model int4, an
 * int8 head keeps 188 of 190 timestamp classes of an fp32 head, an int4 head 156; the head is
 * 5000 x 1024, so int8 costs 5 MB against 20 MB float and 2.8 MB int4.
 */
export const ALIGNER_HEAD_DEFAULT = 'int8';

/**
 * The aligner's default block size (the ASR models' is QUANTIZE_DEFAULTS.blockSize, 64): 128, the
 * block onnxruntime's own MatMulNBits quantiser defaults to. It is what brings the int4 package
 * under the 450 MB target (block 64: 488 MB; 128: 449 MB with the float16 lookup scales and bf16
 * conv weights) at ~10 % more weight error on normal weights (investigation entries 35, 36);
 * `--block-size 64` keeps the finer blocks.
 */
export const ALIGNER_BLOCK_SIZE = 128;

/** The aligner's recipe: preset `whole` unless one is given, the head at ALIGNER_HEAD_DEFAULT unless --lm-head says. */
export function alignerRecipe(o: Pick<QuantizeDirOptions, 'bits' | 'blockSize' | 'accuracyLevel' | 'symmetric' | 'clip' | 'preset' | 'overrides'>): Recipe {
  const overrides = { lm_head: ALIGNER_HEAD_DEFAULT, ...(o.overrides ?? {}) };
  return resolveRecipe(o.preset ?? 'whole', overrides, { bits: o.bits, blockSize: o.blockSize ?? ALIGNER_BLOCK_SIZE, accuracyLevel: o.accuracyLevel, symmetric: o.symmetric, clip: o.clip ?? false });
}

/** config.json's statement of an aligner recipe (the keys before any variant suffix). */
export function statedAlignerRecipe(r: Recipe): Record<string, string> {
  return {
    aligner_decoder: specName(r.decoder), embedding: embeddingSpecName(r.embedding), encoder: specName(r.encoder),
    lm_head: specName(r.lm_head), preset: r.preset,
  };
}

export async function quantizeAlignerDir(o: QuantizeDirOptions): Promise<QuantizeDirResult> {
  if (o.awq) throw new UserError('--awq: not available for a forced-aligner model directory (calibrate measures the ASR decoders)');
  if (o.share !== undefined && o.share !== 'range') throw new UserError(`--share ${o.share}: the forced aligner's lookup shares no table (its head is not tied)`);
  const dir = resolve(o.modelDir);
  const components = alignerRecipe(o);
  const variant = recipeVariant(components);
  const configPath = join(dir, CONFIG_FILE);
  await readAlignerConfig(configPath);
  const lock = await acquireDirLock(dir, 'quantize');
  try {
    return await quantizeLocked(o, dir, variant, components, configPath);
  } finally {
    await lock.release();
  }
}

async function readAlignerConfig(configPath: string): Promise<{ text: string; raw: Record<string, unknown> }> {
  let text: string;
  try { text = await readFile(configPath, 'utf8'); } catch (err) { throw fsError('cannot read', configPath, err); }
  let raw: Record<string, unknown>;
  try { raw = JSON.parse(text) as Record<string, unknown>; } catch (err) {
    throw new UserError(`${configPath}: not valid JSON (${(err as Error).message})`);
  }
  const checked = OutputConfigSchema.safeParse(raw);
  if (!checked.success) throw new UserError(`${configPath}: ${describeZodError(checked.error)}`);
  if (checked.data.model_kind !== 'forced_aligner') throw new Error(`${configPath}: not a forced-aligner directory`);
  return { text, raw };
}

async function quantizeLocked(
  o: QuantizeDirOptions, dir: string, variant: string, components: Recipe, configPath: string,
): Promise<QuantizeDirResult> {
  const { text: configText, raw } = await readAlignerConfig(configPath);
  const quantizeEncoder = components.encoder.precision !== 'fp32';
  const sources = ['aligner_decoder' as const, ...(quantizeEncoder ? ['encoder' as const] : [])];
  for (const g of sources) {
    const p = join(dir, alignerGraphFileName(g));
    try { await access(p); } catch (err) { throw fsError('cannot read', p, err); }
  }
  const nbits = { bits: o.bits, blockSize: o.blockSize ?? ALIGNER_BLOCK_SIZE, accuracyLevel: o.accuracyLevel, symmetric: o.symmetric, ...(o.clip ? { clip: true } : {}), exclude: o.exclude };
  const select = recipeSelector(components);
  const stated = statedAlignerRecipe(components);
  let staged: StagedFiles | undefined;
  let report: TransformReport;
  let encoder: TransformReport | undefined;
  try {
    staged = await StagedFiles.create(dir, `quantize-${variant}`);
    const st = staged;
    report = await transformGraphs({
      graphs: [{ src: join(dir, alignerGraphFileName('aligner_decoder')), dst: st.fileFor(alignerGraphFileName('aligner_decoder', variant)) }],
      dataFile: st.fileFor(alignerWeightsFileName('aligner_decoder', variant)),
      fuse: o.fuse, skipFusion: o.fuse && o.skipFusion, pack: o.pack ?? true,
      quantize: nbits, select, embedding: recipeEmbedding(components), excludeMustMatch: false,
      threads: o.threads, progress: o.progress,
    });
    if (quantizeEncoder) {
      encoder = await transformGraphs({
        graphs: [{ src: join(dir, alignerGraphFileName('encoder')), dst: st.fileFor(alignerGraphFileName('encoder', variant)) }],
        dataFile: st.fileFor(alignerWeightsFileName('encoder', variant)),
        fuse: false, skipFusion: false, pack: o.pack ?? true,
        quantize: nbits, select, excludeMustMatch: false, threads: o.threads, progress: o.progress,
        ...(o.bf16ConvMinBytes !== undefined ? { bf16ConvMinBytes: o.bf16ConvMinBytes } : {}),
      });
    }
    assertExcludesMatched(o.exclude, [...report.graphs, ...(encoder?.graphs ?? [])]);
    const text = configWithRecipe(raw, stated, variant);
    if (text !== configText) await writeFileAtomic(st.fileFor(CONFIG_FILE), text);
    await st.commit();
  } catch (err) {
    await staged?.abort();
    throw err;
  }
  if (!quantizeEncoder) {
    // A float encoder in this recipe: an earlier recipe's quantised encoder of the variant goes.
    await rm(join(dir, alignerGraphFileName('encoder', variant)), { force: true });
    await rm(join(dir, alignerWeightsFileName('encoder', variant)), { force: true });
  }
  const final = (r: TransformReport): TransformReport => ({
    ...r, graphs: r.graphs.map((g) => ({ ...g, dst: join(dir, basename(g.dst)) })), data: { ...r.data, file: join(dir, basename(r.data.file)) },
  });
  return {
    modelDir: dir,
    variant,
    recipe: specName(components.decoder),
    components,
    stated,
    sharedEmbedding: false,
    files: [
      ...(quantizeEncoder ? [alignerGraphFileName('encoder', variant), alignerWeightsFileName('encoder', variant)] : []),
      alignerGraphFileName('aligner_decoder', variant), alignerWeightsFileName('aligner_decoder', variant), CONFIG_FILE,
    ],
    report: final(report),
    ...(encoder ? { encoder: final(encoder) } : {}),
  };
}
