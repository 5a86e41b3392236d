import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeFileAtomic } from '../common/atomic.js';
import { UserError } from '../common/errors.js';
import { sha256File } from '../common/hash.js';
import { Prng } from '../common/prng.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { TOOL_VERSION } from '../common/version.js';
import type { DecoderAttention } from '../graph-builder/decoder.js';
import { exportModel } from '../graph-builder/export.js';
import { EXPORT_RECORD_FILE, ExportRecordSchema } from '../model-dir/export-record.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { quantizeModelDir, QUANTIZE_DEFAULTS, recipeOf, statedRecipe } from '../quantize/model-dir.js';
import type { PresetName, Recipe } from '../quantize/recipe.js';
import { loadAudio } from '../runtime/audio.js';
import { compareVariants, type CompareReport } from '../runtime/compare.js';
import { encodeWav } from '../runtime/wav-writer.js';
import { packageModel, type PackageResult } from './package-model.js';
import type { CompressionLevel } from './archive-writer.js';
import { modelCard } from './model-card.js';
import type { PackageManifest } from './manifest.js';
import { readAwqStats } from '../calibrate/stats-file.js';
import { assertOutputApart, assertWritableDir } from '../common/output-paths.js';
import { parseLayout, type Layout } from '../model-dir/layout.js';
import { modelDirKind } from '../model-dir/aligner.js';
import { ALIGNER_BLOCK_SIZE } from '../quantize/aligner.js';
import { gateAlignerVariants, packagedRecipes } from './aligner-build.js';
import { alignerModelCard } from './aligner-card.js';

export interface BuildOptions {
  model: string;
  revision?: string;
  output: string;
  variants: string[];
  /** Decoder attention of the export (default 'onnx'; see ExportOptions.attention). */
  attention?: DecoderAttention;
  /**
   * Model directory layouts to build and package (default ['split']): each gets its own model
   * directory (`model/` for split, `model-<layout>/` otherwise) and its archives in the one dist/.
   */
  layouts?: Layout[];
  /**
   * Which components each quantized variant quantises (quantize/recipe.ts): default `whole`
   * (encoder, decoders, the token lookup on the lm_head's int4 table), `decoders` on request;
   * `recipe` overrides per component (`{ encoder: 'int8' }`). The gate checks what this makes.
   */
  preset?: PresetName;
  recipe?: Readonly<Record<string, string>>;
  /** AWQ statistics from `calibrate`, applied to every quantized variant. */
  awq?: string;
  awqAlpha?: number;
  /** Audio the int4-vs-fp32 check runs on; a built-in synthetic clip when empty. */
  compareAudio: string[];
  minTop1: number;
  minCosine: number;
  compareMaxTokens: number;
  level: CompressionLevel;
  sizeLabel?: string;
  threads?: number;
  progress?: Progress;
}

export interface BuildRecord {
  format: 'qwen3-onnx-build/1';
  tool: { name: 'qwen3-onnx'; version: string; node: string; onnxruntime: string };
  options: Record<string, unknown>;
  inputs: { model: string; revision: string | null; commit: string | null; files: { path: string; size: number; sha256: string }[] };
  comparisons: CompareReport[];
  outputs: { path: string; size: number; sha256: string }[];
}

/** Variants `build` knows how to make: fp32 is the export itself, intN comes from `quantize --bits N`. */
const QUANTIZED = /^int(4|8)$/;

export function parseVariants(list: string): string[] {
  const variants = list.split(',').map((v) => v.trim()).filter(Boolean);
  if (variants.length === 0) throw new UserError('--variants: give at least one variant, e.g. fp32,int4');
  for (const v of variants) if (v !== 'fp32' && !QUANTIZED.test(v)) throw new UserError(`--variants: unknown variant "${v}" (fp32, int4 or int8)`);
  if (new Set(variants).size !== variants.length) throw new UserError(`--variants: duplicate variant in "${list}"`);
  return variants;
}

/**
 * A deterministic 6 s test clip (a few harmonic tones with a slow vibrato and low noise) for the
 * quantisation check when the caller gives no audio: enough to drive the encoder and the decoder
 * through a real decode, identical on every machine.
 */
function syntheticClip(): Uint8Array {
  const rate = 16000;
  const n = rate * 6;
  const x = new Float32Array(n);
  const rng = new Prng(1234);
  for (let i = 0; i < n; i += 1) {
    const t = i / rate;
    const f0 = 140 + 30 * Math.sin(2 * Math.PI * 0.7 * t);
    let v = 0;
    for (let h = 1; h <= 6; h += 1) v += Math.sin(2 * Math.PI * f0 * h * t) / h;
    x[i] = 0.15 * v * (0.6 + 0.4 * Math.sin(2 * Math.PI * 2.5 * t)) + 0.003 * rng.normal();
  }
  return encodeWav({ sampleRate: rate, channels: [x], encoding: 'pcm16' });
}

async function hashDir(dir: string): Promise<{ path: string; size: number; sha256: string }[]> {
  const out = [];
  for (const name of (await readdir(dir)).sort()) {
    const p = join(dir, name);
    const s = await stat(p);
    if (!s.isFile()) continue;
    out.push({ path: name, size: s.size, sha256: await sha256File(p) });
  }
  return out;
}

/** The checkpoint files export hashed (recorded in the model directory's export record). */
async function exportedInputs(modelDir: string): Promise<BuildRecord['inputs']['files']> {
  const path = join(modelDir, EXPORT_RECORD_FILE);
  return parseJsonWith(ExportRecordSchema, await readFile(path, 'utf8'), path).source.files;
}

/** The model directory a build writes for `layout`, under its output folder. */
export function buildModelDirName(layout: Layout): string {
  return layout === 'split' ? 'model' : `model-${layout}`;
}

/** Parses build's `--layout split,sherpa-onnx` (one layout or a list). */
export function parseLayouts(list: string): Layout[] {
  const layouts = list.split(',').map((v) => v.trim()).filter(Boolean).map((v) => parseLayout(v, '--layout'));
  if (layouts.length === 0) throw new UserError('--layout: give at least one layout, e.g. split,sherpa-onnx');
  if (new Set(layouts).size !== layouts.length) throw new UserError(`--layout: duplicate layout in "${list}"`);
  return layouts;
}

/**
 * The one-shot release build, for each layout: export -> (fuse + quantize [+ AWQ]) -> compare each
 * quantized variant with fp32 (refusing to package one that diverges past the thresholds) ->
 * package every variant; then the model card and build record. Under OUTPUT: `model/` (the split
 * model directory; `model-sherpa-onnx/` for that layout), `dist/` (archives, manifests,
 * SHA256SUMS, README.md), `build-record.json`.
 */
export async function buildRelease(opts: BuildOptions): Promise<{ record: BuildRecord; packages: PackageResult[] }> {
  const progress = opts.progress ?? silentProgress;
  const output = resolve(opts.output);
  const distDir = join(output, 'dist');
  // Before any work: the build folder must not be, contain or sit inside a local checkpoint
  // (export checks only model/ against it), and must be a folder this user can write.
  if (await stat(opts.model).then((s) => s.isDirectory(), () => false)) {
    await assertOutputApart(output, '--output', [{ path: opts.model, flag: '--model' }]);
  }
  await assertWritableDir(output, '--output');
  const created = await outermostMissing(output);
  try {
    return await runBuild(opts, output, distDir, progress);
  } catch (err) {
    // A failed build leaves nothing behind where it made the folders itself (out/ of out/x too).
    if (created) await rm(created, { recursive: true, force: true });
    throw err;
  }
}

/** The outermost folder of `path` that does not exist yet (what `mkdir -p path` creates), or null. */
async function outermostMissing(path: string): Promise<string | null> {
  let missing: string | null = null;
  for (let p = path; !(await stat(p).then(() => true, () => false)); p = dirname(p)) {
    missing = p;
    if (dirname(p) === p) break;
  }
  return missing;
}

async function runBuild(
  opts: BuildOptions, output: string, distDir: string, progress: Progress,
): Promise<{ record: BuildRecord; packages: PackageResult[] }> {
  const layouts = opts.layouts ?? ['split'];
  if (layouts.includes('sherpa-onnx') && (opts.attention ?? 'onnx') !== 'onnx') {
    throw new UserError(`--attention ${opts.attention}: the sherpa-onnx layout uses standard attention (build it with --attention onnx)`);
  }
  // Cheap before expensive: a bad --compare-audio file or recipe is refused before the export, not after it.
  if (opts.variants.some((v) => v !== 'fp32')) for (const file of opts.compareAudio) await loadAudio(file);
  for (const v of opts.variants.filter((x) => x !== 'fp32')) buildRecipe(opts, v);
  await mkdir(output, { recursive: true });

  const comparisons: CompareReport[] = [];
  const packages: PackageResult[] = [];
  let exported: Awaited<ReturnType<typeof exportModel>> | undefined;
  for (const layout of layouts) {
    const modelDir = join(output, buildModelDirName(layout));
    exported = await buildLayout(opts, layout, modelDir, distDir, progress, comparisons, packages);
  }
  if (!exported) throw new Error('build: no layout built');
  const firstModelDir = join(output, buildModelDirName(layouts[0]));

  const manifests: PackageManifest[] = packages.map((p) => p.manifest);
  const aligner = (await modelDirKind(firstModelDir)) === 'forced_aligner';
  await writeFileAtomic(join(distDir, 'README.md'), aligner ? alignerModelCard(manifests) : modelCard(manifests));

  const record: BuildRecord = {
    format: 'qwen3-onnx-build/1',
    tool: { name: 'qwen3-onnx', version: TOOL_VERSION, node: process.version, onnxruntime: ort.env.versions.common ?? 'unknown' },
    options: {
      variants: opts.variants, layouts, attention: opts.attention ?? 'onnx', awq: opts.awq ?? null, awqAlpha: opts.awq ? (opts.awqAlpha ?? 0.2) : null,
      compareAudio: opts.compareAudio.length ? opts.compareAudio : 'builtin-synthetic-6s',
      minTop1: opts.minTop1, minCosine: opts.minCosine, level: opts.level, quantize: aligner ? { ...QUANTIZE_DEFAULTS, blockSize: ALIGNER_BLOCK_SIZE } : QUANTIZE_DEFAULTS,
      preset: opts.preset ?? BUILD_PRESET, recipe: opts.recipe ?? {},
      // What each quantized variant's components are, as config.json and the manifests state it.
      recipes: aligner
        ? packagedRecipes(manifests)
        : Object.fromEntries(opts.variants.filter((v) => v !== 'fp32').map((v) => [v, statedRecipe(buildRecipe(opts, v), opts.awq ? (opts.awqAlpha ?? 0.2) : undefined)])),
    },
    inputs: {
      model: opts.model, revision: opts.revision ?? null, commit: exported.commit ?? null,
      files: await exportedInputs(firstModelDir),
    },
    comparisons,
    outputs: await hashDir(distDir),
  };
  await writeFileAtomic(join(output, 'build-record.json'), `${JSON.stringify(record, null, 2)}\n`);
  return { record, packages };
}

/** The preset `build` quantises with unless told otherwise: the whole model. */
export const BUILD_PRESET: PresetName = 'whole';

/** The recipe of a build's quantized variant `intN` (throws the one-line error of a bad recipe). */
function buildRecipe(opts: BuildOptions, variant: string): Recipe {
  return recipeOf({ ...QUANTIZE_DEFAULTS, bits: Number(variant.slice(3)) as 4 | 8, preset: opts.preset ?? BUILD_PRESET, overrides: opts.recipe ?? {} });
}

/** One layout of a build: export into `modelDir`, quantize, gate, package into `distDir`. */
async function buildLayout(
  opts: BuildOptions, layout: Layout, modelDir: string, distDir: string, progress: Progress,
  comparisons: CompareReport[], packages: PackageResult[],
): Promise<Awaited<ReturnType<typeof exportModel>>> {
  progress.info(`export ${opts.model} -> ${modelDir} (${layout} layout)`);
  const exported = await exportModel({
    model: opts.model, revision: opts.revision, output: modelDir, attention: opts.attention, layout, overwrite: true, progress,
  });

  const quantized = opts.variants.filter((v) => v !== 'fp32');
  const aligner = (await modelDirKind(modelDir)) === 'forced_aligner';
  for (const v of quantized) {
    progress.info(`quantize ${v}`);
    await quantizeModelDir({
      ...QUANTIZE_DEFAULTS,
      blockSize: aligner ? ALIGNER_BLOCK_SIZE : QUANTIZE_DEFAULTS.blockSize,
      modelDir,
      bits: Number(v.slice(3)) as 4 | 8,
      preset: opts.preset ?? BUILD_PRESET,
      overrides: opts.recipe ?? {},
      exclude: [],
      threads: opts.threads,
      progress,
      ...(opts.awq ? { awq: await readAwqStats(opts.awq, modelDir, opts.awqAlpha ?? 0.2) } : {}),
    });
  }

  if (quantized.length && aligner) {
    // The aligner's output is timestamp classes, not text: its own gate (package/aligner-build.ts).
    await gateAlignerVariants(modelDir, quantized, opts.minTop1, progress);
  } else if (quantized.length) {
    let scratch: string | null = null;
    let audio = opts.compareAudio;
    if (audio.length === 0) {
      scratch = await mkdtemp(join(tmpdir(), 'qwen3-onnx-build-'));
      await writeFileAtomic(join(scratch, 'synthetic.wav'), syntheticClip());
      audio = [join(scratch, 'synthetic.wav')];
    }
    try {
      for (const v of quantized) {
        progress.info(`compare fp32 vs ${v} (${layout} layout)`);
        const report = await compareVariants({
          modelDir, variants: ['fp32', v], files: audio, maxNewTokens: opts.compareMaxTokens,
          minTop1: opts.minTop1, minCosine: opts.minCosine, threads: opts.threads, progress,
        });
        comparisons.push(report);
        if (report.fileErrors.length) throw new UserError(`compare fp32 vs ${v}: ${report.fileErrors[0].message}`);
        if (!report.passed) {
          const why = report.comparisons.flatMap((c) => c.failures).join('; ');
          throw new UserError(`${v} diverges from fp32 past the thresholds, not packaging it: ${why}`);
        }
      }
    } finally {
      if (scratch) await rm(scratch, { recursive: true, force: true });
    }
  }

  for (const v of opts.variants) {
    progress.info(`package ${v} (${layout} layout)`);
    packages.push(await packageModel({ modelDir, variant: v, outputDir: distDir, level: opts.level, sizeLabel: opts.sizeLabel, progress }));
  }
  return exported;
}
