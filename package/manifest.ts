import { z } from 'zod';

export const FileRecordSchema = z.object({
  path: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type FileRecord = z.infer<typeof FileRecordSchema>;

/** Where the weights came from: enough to rebuild the same archive. */
export const SourceRecordSchema = z.object({
  model: z.string(),
  revision: z.string().nullable(),
  commit: z.string().nullable(),
  files: z.array(FileRecordSchema),
});
export type SourceRecord = z.infer<typeof SourceRecordSchema>;

/**
 * The manifest every archive carries as its last member, `<top>/manifest.json`: the archive's
 * own file list with sizes and sha256, so a lone archive (downloaded without the files beside
 * it) still proves every member intact. It cannot hold the archive's own hash; the manifest
 * beside the archive adds that.
 */
export const ARCHIVE_MANIFEST_NAME = 'manifest.json';

/** What both manifests say about the variant and its files (last, in this order: the JSON key order). */
const VARIANT_RECORD = {
  variant: z.string(),
  size_label: z.string(),
  tool: z.object({ name: z.literal('qwen3-onnx'), version: z.string() }),
  recipe: z.record(z.string(), z.string()).nullable(),
  source: SourceRecordSchema.nullable(),
  files: z.array(FileRecordSchema),
};

export const ArchiveManifestSchema = z.object({
  format: z.literal('qwen3-onnx-archive/1'),
  name: z.string(),
  ...VARIANT_RECORD,
});
export type ArchiveManifest = z.infer<typeof ArchiveManifestSchema>;

/** Stable JSON, as manifestJson. */
export function archiveManifestJson(m: ArchiveManifest): string {
  return `${JSON.stringify(ArchiveManifestSchema.parse(m), null, 2)}\n`;
}

/** The manifest written beside every archive (`<archive>.manifest.json`). */
export const PackageManifestSchema = z.object({
  format: z.literal('qwen3-onnx-package/1'),
  archive: FileRecordSchema,
  ...VARIANT_RECORD,
});
export type PackageManifest = z.infer<typeof PackageManifestSchema>;

/** Stable JSON: keys in schema order, two-space indent, trailing newline. */
export function manifestJson(m: PackageManifest): string {
  return `${JSON.stringify(PackageManifestSchema.parse(m), null, 2)}\n`;
}
