import { readFile, readdir } from 'node:fs/promises';
import { join, basename } from 'node:path';
import { writeFileAtomic } from '../common/atomic.js';
import { UserError, fsError } from '../common/errors.js';
import { sha256 } from '../common/hash.js';
import type { Progress } from '../common/progress.js';
import { OutputConfigSchema, parseJsonWith, type OutputConfig } from '../checkpoint/config.js';
import { parseCompressionLevel, writeTarGz, type ArchiveEntry, type CompressionLevel } from './archive-writer.js';
import { GRAPHS, graphFileFor, variantFiles } from './variant-files.js';
import { assertOrtOpens } from './ort-open.js';
import { manifestJson, PackageManifestSchema, type PackageManifest, type SourceRecord } from './manifest.js';
import { verifyArchive } from './verify.js';
import { TOOL_VERSION } from '../common/version.js';
import { statSize } from './util.js';
import { EXPORT_RECORD_FILE, ExportRecordSchema } from '../graph-builder/export-record.js';

export interface PackageOptions {
  modelDir: string;
  variant: string;
  outputDir: string;
  /** Compression: `huffman` (default, fastest that still compresses) or zlib level 0-9. */
  level?: CompressionLevel;
  sizeLabel?: string;
  progress: Progress;
}

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
 * Writes `qwen3-asr-<size>-<variant>.tar.gz`, its manifest and an updated SHA256SUMS into
 * `outputDir`: checks the model first (graphs parse, external data in bounds, config valid,
 * onnxruntime opens each graph), then re-reads the written archive and verifies every checksum.
 */
export async function packageModel(opts: PackageOptions): Promise<PackageResult> {
  const level = parseCompressionLevel(opts.level ?? 'huffman');
  if (!/^[a-z0-9]+$/.test(opts.variant)) throw new UserError(`--variant must be like fp32 or int4, got "${opts.variant}"`);
  const configPath = join(opts.modelDir, 'config.json');
  let configText: string;
  try { configText = await readFile(configPath, 'utf8'); } catch (err) { throw fsError('cannot read', configPath, err); }
  const config = parseJsonWith(OutputConfigSchema, configText, configPath);
  const label = sizeLabelOf(config, opts.sizeLabel);
  const name = `qwen3-asr-${label}-${opts.variant}`;

  const files = await variantFiles(opts.modelDir, opts.variant);
  for (const graph of GRAPHS) {
    const file = await graphFileFor(opts.modelDir, graph, opts.variant);
    opts.progress.info(`checking ${file} in onnxruntime`);
    await assertOrtOpens(join(opts.modelDir, file), join(opts.modelDir, file));
  }

  const variantConfig = new TextEncoder().encode(`${JSON.stringify(configForVariant(config, opts.variant), null, 2)}\n`);
  const entries: ArchiveEntry[] = [];
  for (const f of files) {
    if (f === 'config.json') entries.push({ name: f, source: { bytes: variantConfig }, size: variantConfig.byteLength });
    else entries.push({ name: f, source: { path: join(opts.modelDir, f) }, size: await statSize(join(opts.modelDir, f)) });
  }

  const archive = join(opts.outputDir, `${name}.tar.gz`);
  const written = await writeTarGz({ outPath: archive, topDir: name, entries, level, progress: opts.progress });
  const fileRecords = written.files.map((f) => ({ path: f.name, size: f.size, sha256: f.sha256 }));
  const manifest: PackageManifest = PackageManifestSchema.parse({
    format: 'qwen3-onnx-package/1',
    archive: { path: basename(archive), size: written.size, sha256: written.sha256 },
    variant: opts.variant,
    size_label: label,
    tool: { name: 'qwen3-onnx', version: TOOL_VERSION },
    recipe: opts.variant === 'fp32' ? null : (config.quantization ?? null),
    source: await readSource(opts.modelDir),
    files: fileRecords,
  });

  opts.progress.info(`re-reading ${basename(archive)} to verify checksums`);
  await verifyArchive(archive, { manifest, openInOrt: false, progress: opts.progress });

  const manifestPath = join(opts.outputDir, `${name}.manifest.json`);
  await writeFileAtomic(manifestPath, manifestJson(manifest));
  await writeSha256Sums(opts.outputDir);
  return { archive, manifestPath, manifest };
}

/**
 * Rewrites `SHA256SUMS` for every archive and manifest in the directory (sorted, `sha256sum -c`
 * format). Archive hashes come from their manifests, so nothing large is read again.
 */
export async function writeSha256Sums(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.manifest.json')).sort();
  const lines: string[] = [];
  for (const m of names) {
    const text = await readFile(join(dir, m), 'utf8');
    const manifest = parseJsonWith(PackageManifestSchema, text, join(dir, m));
    lines.push(`${manifest.archive.sha256}  ${manifest.archive.path}`);
    lines.push(`${sha256(text)}  ${m}`);
  }
  lines.sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1));
  await writeFileAtomic(join(dir, 'SHA256SUMS'), lines.map((l) => `${l}\n`).join(''));
}
