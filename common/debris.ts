import { readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Temp files and staging folders of this tool are named `.<target>.tmp-<pid>-<tag>` beside their
 * target (common/atomic.ts, common/staging.ts). A run killed with SIGKILL cannot clean up, so every
 * run that writes into (or reads a model from) a folder first settles the leftovers of dead runs
 * that it recognises as its own by name, and never touches anything else:
 *
 *   `.X.tmp-P-T` file, or folder without a commit mark  -> removed (the run never finished)
 *   `.X.tmp-P-T/` holding `COMMIT_MARK`                 -> rolled forward: its files are renamed
 *                                                          into the folder, then it is removed
 *   `.X.tmp-P-T.old/` (an old X moved aside by a swap)  -> the swap is finished: the staged
 *                                                          `.X.tmp-P-T` becomes X if X is absent
 *                                                          (else the old X is put back), then the
 *                                                          aside copy is removed
 *   `.qwen3-onnx.lock` whose pid is gone               -> removed
 */
export const TEMP_NAME = /^\.(.+)\.tmp-(\d+)-([0-9a-f]+)(\.old)?$/;

/** The lock file a writer holds in a folder while it changes it (common/dir-lock.ts); holds its pid. */
export const LOCK_FILE = '.qwen3-onnx.lock';

/** File inside a file-set staging folder that says "every staged file is complete: move them in". */
export const COMMIT_MARK = '.commit';

/** Whether a process with this id exists (EPERM: it exists but belongs to someone else). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function exists(p: string): boolean {
  try { statSync(p); return true; } catch { return false; }
}

/** Moves every staged file of a committed file-set staging folder into `dir`, then removes the folder. */
export function rollForwardFileSet(dir: string, staging: string): void {
  for (const name of readdirSync(staging).sort()) {
    if (name !== COMMIT_MARK) renameSync(join(staging, name), join(dir, name));
  }
  rmSync(staging, { recursive: true, force: true });
}

/** Finishes a folder swap whose old target was moved aside to `${staged}.old`. */
export function finishDirSwap(target: string, staged: string): void {
  const aside = `${staged}.old`;
  if (!exists(target)) renameSync(exists(staged) ? staged : aside, target);
  rmSync(staged, { recursive: true, force: true });
  rmSync(aside, { recursive: true, force: true });
}

/** The leftovers of dead runs in `dir` (names, sorted). */
export function deadRunDebris(dir: string): string[] {
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  return names.filter((n) => {
    const m = TEMP_NAME.exec(n);
    return m !== null && !processAlive(Number(m[2]));
  }).sort();
}

/**
 * Settles dead runs' leftovers in `dir` as the table above says (best effort: a folder this run
 * may not write is left as it is). One readdir when there is nothing to do. Returns the names found.
 */
export function sweepDeadRunDebris(dir: string): string[] {
  const found = deadRunDebris(dir);
  const lock = join(dir, LOCK_FILE);
  try {
    const owner = Number(readFileSync(lock, 'utf8').trim());
    if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) { rmSync(lock, { force: true }); found.push(LOCK_FILE); }
  } catch { /* no lock */ }
  const names = new Set(found);
  for (const name of found) {
    if (name === LOCK_FILE) continue;
    const p = join(dir, name);
    const m = TEMP_NAME.exec(name)!;
    try {
      if (m[4]) {
        finishDirSwap(join(dir, m[1]), p.slice(0, -'.old'.length));
      } else if (names.has(`${name}.old`)) {
        continue; // finished with its .old twin
      } else if (exists(join(p, COMMIT_MARK))) {
        rollForwardFileSet(dir, p);
      } else {
        rmSync(p, { recursive: true, force: true });
      }
    } catch { /* left for a later run */ }
  }
  return found;
}
