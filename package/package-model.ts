import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { acquireDirLock } from '../common/dir-lock.js';
import { UserError, fsError } from '../common/errors.js';
import { assertOutputApart, assertWritableDir } from '../common/output-paths.js';
import type { Progress } from '../common/progress.js';
import { StagedFiles } from '../common/staging.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { type OutputConfig } from '../model-dir/config.js';
import { parseCompressionLevel, writeTarGz, type ArchiveEntry, type ArchivedFile, type CompressionLevel } from './archive-writer.js';
import { graphFileFor, variantFiles } from './variant-files.js';
import { ALIGNER_ARCHIVE_PREFIX, alignerGraphFiles } from './aligner-files.js';
import { archiveLayoutTag, layoutGraphs, type Layout } from '../model-dir/layout.js';
import { SHERPA_README, sherpaReadme } from './sherpa-readme.js';
import { assertOrtOpens } from './ort-open.js';
import {
  ARCHIVE_MANIFEST_NAME, archiveManifestJson, manifestJson, PackageManifestSchema,
  type FileRecord, type PackageManifest, type SourceRecord,
} from './manifest.js';
import { checkModelContents } from './model-checks.js';
import { sha256SumsWith } from './output-dir.js';
import { verifyArchive } from './verify.js';
import { TOOL_VERSION } from '../common/version.js';
import { statSize } from './util.js';
import { EXPORT_RECORD_FILE, ExportRecordSchema } from '../model-dir/export-record.js';
import { CONFIG_FILE } from '../model-dir/files.js';

export interface PackageOptions {
  modelDir: string;
  variant: string;
  outputDir: string;
  /** Compression: `huffman` (default, fastest that still compresses) or zlib level 0-9. */
  level?: CompressionLevel;
  sizeLabel?: string;
  progress: Progress;
}

/** Archive names start with this; the rest is `<size>-<variant>`. */
const ARCHIVE_PREFIX = 'qwen3-asr-';

export interface PackageResult { archive: string; manifestPath: string; manifest: PackageManifest }

/** `0.6b` / `1.7b` for the real shapes, else the caller's label or `custom`. */
export function sizeLabelOf(config: OutputConfig, explicit?: string): string {
  if (explicit) {
    if (!/^[a-z0-9][a-z0-9.-]*$/.test(explicit)) throw new UserError(`--size-label must be lower-case letters, digits, '.' and '-', got "${explicit}"`);
    return explicit;
  }
  const d = config.decoder;
  if (d.num_layers === 28 && d.hidden_size === 1024) return '0.6b';
  if (d.num_layers === 28 && d.hidden_size === 2048) return '1.7b';
  return 'custom';
}

/** config.json as the variant's archive carries it: the recipe only for the graphs it ships. */
function configForVariant(config: OutputConfig, variant: string): OutputConfig {
  const out: OutputConfig = { ...config };
  if (variant === 'fp32') delete out.quantization;
  return out;
}

async function readSource(modelDir: string): Promise<SourceRecord | null> {
  const path = join(modelDir, EXPORT_RECORD_FILE);
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch { return null; }
  return parseJsonWith(ExportRecordSchema, text, path).source;
}

/**
 * Writes `qwen3-asr-<size>-<variant>.tar.gz` (carrying its own manifest.json), its manifest and an
 * updated SHA256SUMS into `outputDir`, all three at once (output-dir.ts). Cheap checks come first:
 * flags, the output path, config.json against embed_tokens.bin, the graphs and the tokenizer;
 * then onnxruntime opens each graph; then the archive is written, re-read and its checksums
 * verified before it is switched in.
 */
export async function packageModel(opts: PackageOptions): Promise<PackageResult> {
  const level = parseCompressionLevel(opts.level ?? 'huffman');
  if (!/^[a-z0-9]+$/.test(opts.variant)) throw new UserError(`--variant must be like fp32 or int4, got "${opts.variant}"`);
  const modelDir = resolve(opts.modelDir);
  const outputDir = resolve(opts.outputDir);
  await assertOutputApart(outputDir, '--output', [{ path: modelDir, flag: '--model-dir' }]);
  await assertWritableDir(outputDir, '--output');

  const files = await variantFiles(modelDir, opts.variant);
  const config = await checkModelContents({ dir: modelDir, display: modelDir, variant: opts.variant });
  const layout = config.layout ?? 'split';
  const label = sizeLabelOf(config, opts.sizeLabel);
  const name = config.model_kind === 'forced_aligner'
    ? `${ALIGNER_ARCHIVE_PREFIX}${label}-${opts.variant}`
    : `${ARCHIVE_PREFIX}${label}-${archiveLayoutTag(layout)}${opts.variant}`;

  // Where the output folder starts to exist: a failed first run removes the folders it made.
  const made = await mkdir(outputDir, { recursive: true }).catch((err: unknown) => { throw fsError('cannot create', outputDir, err); });
  try {
    const lock = await acquireDirLock(outputDir, 'package');
    try {
      return await packageInto(opts, { modelDir, outputDir, files, config, label, name, level, layout });
    } finally {
      await lock.release();
    }
  } catch (err) {
    if (made) await removeEmptyDirs(outputDir, made);
    throw err;
  }
}

async function packageInto(
  opts: PackageOptions,
  p: { modelDir: string; outputDir: string; files: string[]; config: OutputConfig; label: string; name: string; level: CompressionLevel; layout: Layout },
): Promise<PackageResult> {
  const stage = await StagedFiles.create(p.outputDir, p.name);
  try {
    const graphFiles: string[] = [];
    const aligner = p.config.model_kind === 'forced_aligner';
    for (const graph of aligner ? [] : layoutGraphs(p.layout)) graphFiles.push(await graphFileFor(p.modelDir, graph, opts.variant, p.layout));
    if (aligner) graphFiles.push(...await alignerGraphFiles(p.modelDir, opts.variant));
    for (const file of graphFiles) {
      opts.progress.info(`checking ${file} in onnxruntime`);
      await assertOrtOpens(join(p.modelDir, file), join(p.modelDir, file));
    }

    const variantConfig = new TextEncoder().encode(`${JSON.stringify(configForVariant(p.config, opts.variant), null, 2)}\n`);
    const entries: ArchiveEntry[] = [];
    for (const f of p.files) {
      if (f === CONFIG_FILE) entries.push({ name: f, source: { bytes: variantConfig }, size: variantConfig.byteLength });
      else entries.push({ name: f, source: { path: join(p.modelDir, f) }, size: await statSize(join(p.modelDir, f)) });
    }
    if (p.layout === 'sherpa-onnx') {
      const [convFrontend, encoder, decoder] = graphFiles;
      const readme = new TextEncoder().encode(sherpaReadme({ top: p.name, convFrontend, encoder, decoder, variant: opts.variant, sizeLabel: p.label }));
      entries.push({ name: SHERPA_README, source: { bytes: readme }, size: readme.byteLength });
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    const described = {
      variant: opts.variant,
      size_label: p.label,
      tool: { name: 'qwen3-onnx' as const, version: TOOL_VERSION },
      recipe: opts.variant === 'fp32' ? null : (p.config.quantization ?? null),
      source: await readSource(p.modelDir),
    };
    const archiveName = `${p.name}.tar.gz`;
    const stagedArchive = stage.fileFor(archiveName);
    const written = await writeTarGz({
      outPath: stagedArchive, topDir: p.name, entries, level: p.level, progress: opts.progress,
      finalEntry: {
        name: ARCHIVE_MANIFEST_NAME,
        bytes: (records) => new TextEncoder().encode(archiveManifestJson({
          format: 'qwen3-onnx-archive/1', name: p.name, ...described, files: records.map(toFileRecord),
        })),
      },
    });
    const manifest: PackageManifest = PackageManifestSchema.parse({
      format: 'qwen3-onnx-package/1',
      archive: { path: archiveName, size: written.size, sha256: written.sha256 },
      ...described,
      files: written.files.map(toFileRecord),
    });

    opts.progress.info(`re-reading ${archiveName} to verify checksums`);
    await verifyArchive(stagedArchive, { manifest, depth: 'checksums', progress: opts.progress });

    const manifestName = `${p.name}.manifest.json`;
    const manifestText = manifestJson(manifest);
    await writeFile(stage.fileFor(manifestName), manifestText).catch((err: unknown) => { throw fsError('cannot write', join(p.outputDir, manifestName), err); });
    const sums = await sha256SumsWith(p.outputDir, { name: manifestName, text: manifestText });
    await writeFile(stage.fileFor('SHA256SUMS'), sums).catch((err: unknown) => { throw fsError('cannot write', join(p.outputDir, 'SHA256SUMS'), err); });
    await stage.commit();
    return { archive: join(p.outputDir, archiveName), manifestPath: join(p.outputDir, manifestName), manifest };
  } catch (err) {
    await stage.abort();
    throw err;
  }
}

function toFileRecord(f: ArchivedFile): FileRecord {
  return { path: f.name, size: f.size, sha256: f.sha256 };
}

/** Removes `dir` and its parents up to `first` (the first folder this run created), while empty. */
async function removeEmptyDirs(dir: string, first: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    try { await rmdir(d); } catch { return; }
    if (d === first || dirname(d) === d) return;
  }
}
