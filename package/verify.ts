import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { once } from 'node:events';
import { UserError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { OutputConfigSchema, parseJsonWith } from '../checkpoint/config.js';
import { readTarGz } from './archive-reader.js';
import { PackageManifestSchema, type PackageManifest } from './manifest.js';
import { GRAPHS, graphFileFor, variantFiles } from './variant-files.js';
import { assertOrtOpens } from './ort-open.js';

export interface VerifyOptions {
  /** The manifest to hold the archive to; by default `<name>.manifest.json` beside it, when present. */
  manifest?: PackageManifest | null;
  /** Extract and open every graph in onnxruntime (slow for big models; always on for verify-package). */
  openInOrt: boolean;
  progress: Progress;
}

export interface VerifyResult {
  archive: string;
  variant: string;
  files: { path: string; size: number; sha256: string }[];
  manifestChecked: boolean;
  sumsChecked: boolean;
}

const ARCHIVE_NAME = /^qwen3-asr-([a-z0-9][a-z0-9.-]*)-([a-z0-9]+)\.tar\.gz$/;

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

/**
 * Reads an archive back and checks it: one top-level folder named after the archive, no file
 * twice, no path escaping it, exactly the variant's file list, each file's sha256 against the
 * manifest (when there is one), config.json valid, and optionally every graph opened in
 * onnxruntime from an extracted copy. Errors name the file at fault.
 */
export async function verifyArchive(archive: string, opts: VerifyOptions): Promise<VerifyResult> {
  const m = ARCHIVE_NAME.exec(basename(archive));
  if (!m) throw new UserError(`${archive}: archive name must be qwen3-asr-<size>-<variant>.tar.gz`);
  const top = basename(archive).replace(/\.tar\.gz$/, '');
  const variant = m[2];
  const manifest = opts.manifest === undefined ? await loadManifestBeside(archive) : opts.manifest;

  const scratch = opts.openInOrt ? await mkdtemp(join(tmpdir(), 'qwen3-onnx-verify-')) : null;
  try {
    const files: VerifyResult['files'] = [];
    const seen = new Set<string>();
    let sawTop = false;
    const { sha256: archiveSha } = await readTarGz(archive, (h) => {
      if (h.type === 'directory') {
        if (h.name !== top) throw new UserError(`${archive}: unexpected directory ${h.name} (everything must sit in ${top}/)`);
        sawTop = true;
        return null;
      }
      if (!h.name.startsWith(`${top}/`)) throw new UserError(`${archive}: ${h.name} is outside the top-level folder ${top}/`);
      const rel = h.name.slice(top.length + 1);
      if (!rel || rel.includes('/') || rel === '.' || rel === '..') throw new UserError(`${archive}: unexpected path ${h.name}`);
      if (seen.has(rel)) throw new UserError(`${archive}: ${rel} is stored twice`);
      seen.add(rel);
      const hash = createHash('sha256');
      let out: WriteStream | null = scratch ? createWriteStream(join(scratch, rel)) : null;
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

    if (manifest) {
      const expected = new Map(manifest.files.map((f) => [f.path, f]));
      for (const f of files) {
        const e = expected.get(f.path);
        if (!e) throw new UserError(`${archive}: ${f.path} is not in the manifest`);
        if (e.sha256 !== f.sha256 || e.size !== f.size) throw new UserError(`${archive}: ${f.path} does not match its manifest checksum (tampered or corrupt)`);
      }
      for (const e of manifest.files) if (!seen.has(e.path)) throw new UserError(`${archive}: ${e.path} is in the manifest but missing from the archive`);
      if (manifest.archive.sha256 !== archiveSha) throw new UserError(`${archive}: archive sha256 differs from its manifest`);
    }
    // After the per-file checks, so a changed file inside is named rather than just the archive.
    const sumsChecked = await checkSums(archive, archiveSha);

    if (scratch) {
      const config = join(scratch, 'config.json');
      let text: string;
      try { text = await readFile(config, 'utf8'); } catch { throw new UserError(`${archive}: config.json is missing`); }
      parseJsonWith(OutputConfigSchema, text, `${top}/config.json`);
      const wanted = await variantFiles(scratch, variant).catch((err: unknown) => {
        throw new UserError(`${archive}: ${(err as Error).message.replace(scratch, top)}`);
      });
      const extra = [...seen].filter((f) => !wanted.includes(f));
      if (extra.length) throw new UserError(`${archive}: ${extra[0]} is not a file the ${variant} variant loads`);
      for (const graph of GRAPHS) {
        const file = await graphFileFor(scratch, graph, variant);
        await assertOrtOpens(join(scratch, file), `${top}/${file}`);
      }
    }
    return { archive, variant, files, manifestChecked: Boolean(manifest), sumsChecked };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}
