import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { prepareDir, syncFile, tempPathFor } from './atomic.js';
import { trackTemp } from './cleanup.js';
import { COMMIT_MARK, finishDirSwap, rollForwardFileSet } from './debris.js';
import { fsError } from './errors.js';

/**
 * Multi-file results that appear all at once or not at all.
 *
 * StagedDir: a whole output folder built in `.<out>.tmp-<pid>-<tag>/` beside it, then swapped in:
 *
 *     out/ ──rename──> .out.tmp-P-T.old/        (only when replacing an old out/)
 *     .out.tmp-P-T/ ──rename──> out/
 *     rm -r .out.tmp-P-T.old/
 *
 * StagedFiles: several files for one folder (a quantised variant's graphs, weights and config)
 * written into `<dir>/.<label>.tmp-<pid>-<tag>/`, fsynced, marked with COMMIT_MARK, then renamed
 * in one by one. An interrupt before the mark removes the staging folder (old state); once the mark
 * is written every path forward completes the renames: the signal handler does it synchronously,
 * and after a SIGKILL the next run that touches the folder rolls it forward (common/debris.ts).
 */

/** Creates a staging folder; on failure forgets it (`untrack`) and says which path could not be made. */
async function makeStagingFolder(path: string, untrack: () => void): Promise<void> {
  try {
    await mkdir(path);
  } catch (err) {
    untrack();
    throw fsError('cannot create', path, err);
  }
}

export class StagedDir {
  /** Where to write the new contents. */
  readonly path: string;
  private untrack: () => void;

  private constructor(readonly target: string) {
    this.path = tempPathFor(target);
    this.untrack = trackTemp(this.path);
  }

  static async create(target: string): Promise<StagedDir> {
    await prepareDir(dirname(target));
    const staged = new StagedDir(target);
    await makeStagingFolder(staged.path, () => staged.untrack());
    return staged;
  }

  /** Swaps the staged folder in for `target` (an existing target folder is replaced as a whole). */
  async commit(): Promise<void> {
    const aside = `${this.path}.old`;
    const replacing = await stat(this.target).then(() => true, () => false);
    // From the first rename on, an interrupt finishes the swap instead of undoing half of it.
    this.untrack();
    this.untrack = trackTemp(this.path, () => finishDirSwap(this.target, this.path));
    try {
      if (replacing) await rename(this.target, aside);
      await rename(this.path, this.target);
    } catch (err) {
      if (replacing) await rename(aside, this.target).catch(() => undefined);
      await rm(this.path, { recursive: true, force: true });
      this.untrack();
      throw fsError('cannot write', this.target, err);
    }
    this.untrack();
    await rm(aside, { recursive: true, force: true });
  }

  async abort(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
    this.untrack();
  }
}

export class StagedFiles {
  readonly path: string;
  private untrack: () => void;
  private readonly names = new Set<string>();
  /** Set once the commit mark is on disk: from then on the set only moves forward. */
  private marked = false;

  private constructor(readonly dir: string, label: string) {
    this.path = tempPathFor(join(dir, label));
    this.untrack = trackTemp(this.path);
  }

  static async create(dir: string, label: string): Promise<StagedFiles> {
    await prepareDir(dir);
    const staged = new StagedFiles(dir, label);
    await makeStagingFolder(staged.path, () => staged.untrack());
    return staged;
  }

  /** The staging path for the final file `dir/name`. */
  fileFor(name: string): string {
    if (name !== basename(name) || name === COMMIT_MARK) throw new Error(`bad staged file name ${name}`);
    this.names.add(name);
    return join(this.path, name);
  }

  /** fsyncs every staged file, marks the set complete, and renames each into the folder. */
  async commit(): Promise<string[]> {
    const present = (await readdir(this.path)).sort();
    try {
      for (const name of present) await syncFile(join(this.path, name));
      await writeFile(join(this.path, COMMIT_MARK), '');
      await syncFile(join(this.path, COMMIT_MARK));
      this.marked = true;
    } catch (err) {
      this.marked = false;
      await this.abort();
      throw fsError('cannot write', this.dir, err);
    }
    this.untrack();
    this.untrack = trackTemp(this.path, () => rollForwardFileSet(this.dir, this.path));
    try {
      for (const name of present) await rename(join(this.path, name), join(this.dir, name));
      await rm(this.path, { recursive: true, force: true });
    } catch (err) {
      // The set is complete on disk: finish it now or leave it for the next run to roll forward.
      try { rollForwardFileSet(this.dir, this.path); } catch { /* next run */ }
      this.untrack();
      throw fsError('cannot write', this.dir, err);
    }
    this.untrack();
    return present;
  }

  /** Removes the staging folder, unless the set is already marked complete (then it rolls forward). */
  async abort(): Promise<void> {
    if (this.marked) return;
    await rm(this.path, { recursive: true, force: true });
    this.untrack();
  }
}
