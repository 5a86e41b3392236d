import { readdirSync, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { COMMIT_MARK, TEMP_NAME, processAlive } from '../common/debris.js';
import { sha256 } from '../common/hash.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { PackageManifestSchema } from './manifest.js';

/**
 * The folder `package` writes into (a build's dist/): archives, their manifests, one SHA256SUMS.
 *
 * How a package run switches its three files in (common/staging.ts, StagedFiles): the archive,
 * its manifest and the new SHA256SUMS are written and fsynced in `.qwen3-asr-<...>.tmp-<pid>-<tag>/`
 * inside the folder, a commit mark is written, then the three are renamed in, in name order:
 * SHA256SUMS, `<name>.manifest.json`, `<name>.tar.gz` (so a new archive never appears without its
 * manifest), and the staging folder is removed. Before the mark an interrupt or failure removes the
 * staging folder and the folder is as it was; after it, SIGINT/SIGTERM finish the renames at once,
 * and the next run that writes here finishes those of a run killed with SIGKILL.
 *
 * Readers therefore see an unfinished switch only in the few renames after a SIGKILL; they refuse
 * the archives it names (unfinishedCommitsIn) instead of judging a half-switched set.
 */

export interface UnfinishedCommit {
  /** The staging folder's name inside the output folder. */
  staging: string;
  /** The files it has still to move in. */
  files: string[];
  /** The run's process id, and whether it still runs (it may be renaming right now). */
  pid: number;
  alive: boolean;
  /** One sentence for an error message. */
  describe: string;
}

/** Staging folders in `dir` marked complete but not yet moved in (see above). */
export function unfinishedCommitsIn(dir: string): UnfinishedCommit[] {
  let names: string[];
  try { names = readdirSync(dir).sort(); } catch { return []; }
  const out: UnfinishedCommit[] = [];
  for (const staging of names) {
    const m = TEMP_NAME.exec(staging);
    if (!m || m[4]) continue;
    let files: string[];
    try {
      if (!statSync(join(dir, staging)).isDirectory()) continue;
      files = readdirSync(join(dir, staging)).sort();
    } catch { continue; }
    if (!files.includes(COMMIT_MARK)) continue;
    const pid = Number(m[2]);
    const alive = processAlive(pid);
    const pending = files.filter((f) => f !== COMMIT_MARK);
    out.push({
      staging, files: pending, pid, alive,
      describe: alive
        ? `a package run (pid ${pid}) is switching in ${pending.join(', ')} right now; try again in a moment`
        : `an interrupted package run left ${pending.join(', ')} half switched in (${staging}); run qwen3-onnx package again with the same output to finish it`,
    });
  }
  return out;
}

/**
 * SHA256SUMS for `dir` once `incoming` (a manifest's file name and text) is in: every archive
 * and manifest, sorted by name, `sha256sum -c` format. Archive hashes come from their manifests,
 * so nothing large is read again.
 */
export async function sha256SumsWith(dir: string, incoming: { name: string; text: string }): Promise<string> {
  const texts = new Map<string, string>();
  for (const m of (await readdir(dir)).filter((f) => f.endsWith('.manifest.json') && !f.startsWith('.'))) {
    texts.set(m, await readFile(join(dir, m), 'utf8'));
  }
  texts.set(incoming.name, incoming.text);
  const lines: string[] = [];
  for (const [name, text] of texts) {
    const manifest = parseJsonWith(PackageManifestSchema, text, join(dir, name));
    lines.push(`${manifest.archive.sha256}  ${manifest.archive.path}`);
    lines.push(`${sha256(text)}  ${name}`);
  }
  lines.sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1));
  return lines.map((l) => `${l}\n`).join('');
}
