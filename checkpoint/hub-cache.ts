/**
 * The Hugging Face hub cache layout, shared with Python's huggingface_hub so that files a
 * Python user already downloaded are reused (and ours are reused by Python):
 *
 *   <cache>/models--<owner>--<name>/
 *     blobs/<etag>                      file content; etag = sha256 (LFS) or git blob sha1
 *     blobs/<etag>.incomplete           a download in progress (resumable; never read as a blob)
 *     snapshots/<commit>/<path>         -> ../../blobs/<etag> (relative symlink, or a copy)
 *     refs/<revision>                   the commit sha a branch/tag pointed to when last resolved
 */
import { getHFHubCachePath, getRepoFolderName } from '@huggingface/hub';
import { copyFile, mkdir, readFile, rename, rm, stat, symlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { tempPathFor, writeFileAtomic } from '../common/atomic.js';
import { fsError, UserError } from '../common/errors.js';

const COMMIT_SHA = /^[0-9a-f]{40}$/;

export const isCommitSha = (revision: string): boolean => COMMIT_SHA.test(revision);

/** `opts.cacheDir`, else $HF_HUB_CACHE, else $HF_HOME/hub (or $XDG_CACHE_HOME/huggingface/hub), else ~/.cache/huggingface/hub. */
export function hubCacheDir(override?: string): string {
  const dir = override ?? getHFHubCachePath();
  return dir.startsWith('~') ? join(homedir(), dir.slice(1)) : dir;
}

/** Paths of one model repo inside the cache. */
export class RepoCache {
  readonly root: string;

  constructor(cacheDir: string, readonly repo: string) {
    this.root = join(cacheDir, getRepoFolderName({ type: 'model', name: repo }));
  }

  blobPath(etag: string): string { return join(this.root, 'blobs', etag); }
  incompletePath(etag: string): string { return `${this.blobPath(etag)}.incomplete`; }
  snapshotDir(commit: string): string { return join(this.root, 'snapshots', commit); }
  snapshotFile(commit: string, file: string): string { return join(this.snapshotDir(commit), file); }
  refPath(revision: string): string { return join(this.root, 'refs', revision); }

  /** The commit a revision resolves to offline: itself if it is a sha, else refs/<revision>. */
  async commitFor(revision: string): Promise<string | undefined> {
    if (isCommitSha(revision)) return revision;
    let text: string;
    try {
      text = await readFile(this.refPath(revision), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fsError('cannot read', this.refPath(revision), err);
    }
    const commit = text.trim();
    if (!isCommitSha(commit)) {
      throw new UserError(`${this.refPath(revision)}: expected a 40-character commit sha, got "${commit.slice(0, 60)}"`);
    }
    return commit;
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    await writeFileAtomic(this.refPath(revision), commit);
  }

  /**
   * Points snapshots/<commit>/<file> at blobs/<etag>: a relative symlink like Python writes,
   * or a copy where symlinks are not allowed (Windows without developer mode). The link is
   * made under a temp name and renamed, so the snapshot never holds a half-made entry.
   */
  async linkSnapshotFile(commit: string, file: string, etag: string): Promise<void> {
    const target = this.snapshotFile(commit, file);
    const blob = this.blobPath(etag);
    const tmp = tempPathFor(target);
    try {
      await mkdir(dirname(target), { recursive: true });
      try {
        await symlink(relative(dirname(target), blob), tmp);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EINVAL') throw err;
        await copyFile(blob, tmp);
      }
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw fsError('cannot link', target, err);
    }
  }
}

/** Size of the file at `path` (following symlinks), or undefined when it does not exist. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw fsError('cannot read', path, err);
  }
}
