import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { once } from 'node:events';
import { trackTemp } from '../common/cleanup.js';
import { UserError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { readTarGz } from './archive-reader.js';
import {
  ARCHIVE_MANIFEST_NAME, ArchiveManifestSchema, PackageManifestSchema,
  type ArchiveManifest, type FileRecord, type PackageManifest,
} from './manifest.js';
import { checkModelContents } from './model-checks.js';
import { unfinishedCommitsIn } from './output-dir.js';
import { graphFileFor, variantFiles } from './variant-files.js';
import { alignerGraphFiles } from './aligner-files.js';
import { modelDirKind } from '../model-dir/aligner.js';
import { SHERPA_TOKENIZER_DIR, detectLayout, layoutGraphs } from '../model-dir/layout.js';
import { SHERPA_README } from './sherpa-readme.js';
import { assertOrtOpens } from './ort-open.js';
import { EMBED_TOKENS_BIN } from '../model-dir/files.js';

/**
 * How far verifyArchive goes:
 * - `checksums`: layout, and every member against the manifest inside the archive (and the one
 *   given or beside it), the archive against SHA256SUMS;
 * - `contents`: also config.json, embed_tokens.bin's size, the graphs' widths and the tokenizer,
 *   from the small members (the weights are hashed, never written out);
 * - `full`: also extracts everything, checks it is exactly what the variant loads, and opens every
 *   graph in onnxruntime (what verify-package does).
 */
export type VerifyDepth = 'checksums' | 'contents' | 'full';

export interface VerifyOptions {
  /**
   * The manifest to hold the archive to. Undefined: `<name>.manifest.json` beside it when present
   * (the archive is then also refused while an interrupted package run is switching it in).
   * Null: only the manifest inside.
   */
  manifest?: PackageManifest | null;
  depth: VerifyDepth;
  progress: Progress;
}

export interface VerifyResult {
  archive: string;
  variant: string;
  files: FileRecord[];
  /** The manifest the archive carries (always checked). */
  archiveManifest: ArchiveManifest;
  /** Whether a manifest beside the archive (or given) was checked too. */
  manifestChecked: boolean;
  sumsChecked: boolean;
}

// qwen3-asr-* (the ASR models) or qwen3-forcedaligner-* (package/aligner-files.ts).
const ARCHIVE_NAME = /^qwen3-(?:asr|forcedaligner)-([a-z0-9][a-z0-9.-]*)-([a-z0-9]+)\.tar\.gz$/;
/** The in-archive manifest is a few KiB; refuse to buffer anything claiming to be far larger. */
const MAX_MANIFEST_BYTES = 16 << 20;
/** Members `contents` leaves unwritten (hashed only): the weights. */
/**
 * A member path inside the top folder: a plain name, or one file in the sherpa-onnx layout's
 * tokenizer/ folder; nothing else nests.
 */
function isMemberPath(rel: string): boolean {
  const parts = rel.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return false;
  return parts.length === 1 || (parts.length === 2 && parts[0] === SHERPA_TOKENIZER_DIR);
}

const isBulk = (name: string): boolean => name.endsWith('.data') || name === EMBED_TOKENS_BIN;

async function loadManifestBeside(archive: string): Promise<PackageManifest | null> {
  const path = archive.replace(/\.tar\.gz$/, '.manifest.json');
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch { return null; }
  return parseJsonWith(PackageManifestSchema, text, path);
}

async function checkSums(archive: string, actualSha: string): Promise<boolean> {
  const path = join(dirname(archive), 'SHA256SUMS');
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch { return false; }
  const line = text.split('\n').find((l) => l.endsWith(`  ${basename(archive)}`));
  if (!line) return false;
  if (line.slice(0, 64) !== actualSha) throw new UserError(`${basename(archive)}: sha256 differs from SHA256SUMS (archive was modified or replaced)`);
  return true;
}

/** Every member against a manifest's file list: same names, sizes and sha256. */
function matchFiles(archive: string, files: FileRecord[], expected: FileRecord[], which: string): void {
  const byPath = new Map(expected.map((f) => [f.path, f]));
  for (const f of files) {
    const e = byPath.get(f.path);
    if (!e) throw new UserError(`${archive}: ${f.path} is not in ${which}`);
    if (e.sha256 !== f.sha256 || e.size !== f.size) throw new UserError(`${archive}: ${f.path} does not match its manifest checksum (tampered or corrupt)`);
  }
  const seen = new Set(files.map((f) => f.path));
  for (const e of expected) if (!seen.has(e.path)) throw new UserError(`${archive}: ${e.path} is in ${which} but missing from the archive`);
}

/**
 * Reads an archive back and checks it: one top-level folder named after the archive, no file
 * twice, no path escaping it, each member's sha256 against the manifest the archive carries (so
 * a lone archive proves itself) and against the manifest beside it, the archive's own sha256
 * against that manifest and SHA256SUMS, and, by `depth`, the model it holds. Errors name the
 * file at fault.
 */
export async function verifyArchive(archive: string, opts: VerifyOptions): Promise<VerifyResult> {
  const m = ARCHIVE_NAME.exec(basename(archive));
  if (!m) throw new UserError(`${archive}: archive name must be qwen3-asr-<size>-<variant>.tar.gz`);
  const top = basename(archive).replace(/\.tar\.gz$/, '');
  const variant = m[2];
  if (opts.manifest === undefined) {
    const unfinished = unfinishedCommitsIn(dirname(archive)).find((c) => c.files.includes(basename(archive)));
    if (unfinished) throw new UserError(`${archive}: ${unfinished.describe}`);
  }
  const manifest = opts.manifest === undefined ? await loadManifestBeside(archive) : opts.manifest;

  const scratch = opts.depth === 'checksums' ? null : await mkdtemp(join(tmpdir(), `qwen3-onnx-verify-${process.pid}-`));
  const untrack = scratch ? trackTemp(scratch) : () => {};
  try {
    const files: FileRecord[] = [];
    const seen = new Set<string>();
    let sawTop = false;
    let innerText: string | null = null;
    const { sha256: archiveSha } = await readTarGz(archive, (h) => {
      if (h.type === 'directory') {
        if (h.name !== top) throw new UserError(`${archive}: unexpected directory ${h.name} (everything must sit in ${top}/)`);
        sawTop = true;
        return null;
      }
      if (!h.name.startsWith(`${top}/`)) throw new UserError(`${archive}: ${h.name} is outside the top-level folder ${top}/`);
      const rel = h.name.slice(top.length + 1);
      if (!isMemberPath(rel)) throw new UserError(`${archive}: unexpected path ${h.name}`);
      if (seen.has(rel)) throw new UserError(`${archive}: ${rel} is stored twice`);
      seen.add(rel);
      if (rel === ARCHIVE_MANIFEST_NAME) {
        if (h.size > MAX_MANIFEST_BYTES) throw new UserError(`${archive}: ${top}/${rel} is ${h.size} bytes, not a manifest`);
        const parts: Uint8Array[] = [];
        return {
          data(chunk) { parts.push(Uint8Array.from(chunk)); },
          end() { innerText = Buffer.concat(parts).toString('utf8'); },
        };
      }
      const hash = createHash('sha256');
      const extract = scratch !== null && (opts.depth === 'full' || !isBulk(rel));
      if (extract && rel.includes('/')) mkdirSync(join(scratch, dirname(rel)), { recursive: true });
      let out: WriteStream | null = extract ? createWriteStream(join(scratch, rel)) : null;
      let size = 0;
      return {
        async data(chunk) {
          hash.update(chunk);
          size += chunk.byteLength;
          if (out && !out.write(chunk)) await once(out, 'drain');
        },
        async end() {
          if (out) { out.end(); await once(out, 'close'); out = null; }
          files.push({ path: rel, size, sha256: hash.digest('hex') });
          opts.progress.update(`verifying ${top}`, files.length, manifest?.files.length ?? files.length);
        },
      };
    });
    opts.progress.finish();
    if (!sawTop) throw new UserError(`${archive}: no top-level folder ${top}/`);
    files.sort((a, b) => (a.path < b.path ? -1 : 1));

    if (innerText === null) {
      throw new UserError(`${archive}: no ${top}/${ARCHIVE_MANIFEST_NAME} inside (not written by qwen3-onnx package, or by a version before archives carried their manifest)`);
    }
    const inner = parseJsonWith(ArchiveManifestSchema, innerText, `${archive}: ${top}/${ARCHIVE_MANIFEST_NAME}`);
    if (inner.name !== top || inner.variant !== variant) {
      throw new UserError(`${archive}: ${top}/${ARCHIVE_MANIFEST_NAME} describes ${inner.name} (variant ${inner.variant}), not this archive`);
    }
    matchFiles(archive, files, inner.files, `${top}/${ARCHIVE_MANIFEST_NAME}`);
    if (manifest) {
      const beside = basename(archive).replace(/\.tar\.gz$/, '.manifest.json');
      matchFiles(archive, files, manifest.files, beside);
      if (manifest.variant !== variant) throw new UserError(`${beside}: variant ${manifest.variant} differs from the archive's ${variant}`);
      if (manifest.archive.sha256 !== archiveSha) throw new UserError(`${archive}: archive sha256 differs from its manifest`);
    }
    // After the per-file checks, so a changed file inside is named rather than just the archive.
    const sumsChecked = opts.manifest === undefined ? await checkSums(archive, archiveSha) : false;

    if (scratch) {
      const sizes = new Map(files.map((f) => [f.path, f.size]));
      await checkModelContents({ dir: scratch, display: `${archive}: ${top}`, variant, sizeOf: (n) => sizes.get(n) });
    }
    if (scratch && opts.depth === 'full') {
      const wanted = await variantFiles(scratch, variant).catch((err: unknown) => {
        throw err instanceof UserError ? new UserError(`${archive}: ${err.message.split(scratch).join(top)}`) : err;
      });
      const layout = await detectLayout(scratch);
      if (layout === 'sherpa-onnx') wanted.push(SHERPA_README);
      const extra = files.map((f) => f.path).filter((f) => !wanted.includes(f));
      if (extra.length) throw new UserError(`${archive}: ${extra[0]} is not a file the ${variant} variant loads`);
      const aligner = (await modelDirKind(scratch)) === 'forced_aligner';
      const graphFiles = aligner ? await alignerGraphFiles(scratch, variant) : [];
      for (const graph of aligner ? [] : layoutGraphs(layout)) graphFiles.push(await graphFileFor(scratch, graph, variant, layout));
      for (const file of graphFiles) await assertOrtOpens(join(scratch, file), `${archive}: ${top}/${file}`);
    }
    return { archive, variant, files, archiveManifest: inner, manifestChecked: Boolean(manifest), sumsChecked };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
    untrack();
  }
}
