import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { trackTemp } from './cleanup.js';
import { LOCK_FILE, processAlive } from './debris.js';
import { UserError, fsError } from './errors.js';

export { LOCK_FILE };

export interface DirLock { release(): Promise<void> }

async function lockOwner(path: string): Promise<number | null> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Takes `dir`'s writer lock (created exclusively, holding this pid), or refuses in one line when a
 * live run holds it. A lock left by a dead run (SIGKILL) is taken over. The lock is removed on
 * release and on SIGINT/SIGTERM.
 */
export async function acquireDirLock(dir: string, command: string): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const fh = await open(path, 'wx');
      try { await fh.writeFile(`${process.pid}\n`); } finally { await fh.close(); }
      const untrack = trackTemp(path);
      return {
        release: async () => { untrack(); await rm(path, { force: true }); },
      };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw fsError(`${command}: cannot lock`, dir, err);
    }
    const owner = await lockOwner(path);
    if (owner !== null && processAlive(owner)) {
      throw new UserError(`${dir}: another qwen3-onnx run (pid ${owner}) is writing this model directory; wait for it to finish`);
    }
    await rm(path, { force: true }); // stale: its writer is gone
  }
  throw new UserError(`${dir}: cannot take the writer lock ${path}`);
}

/** Refuses when a live run holds `dir`'s lock (for commands that are about to replace `dir`). */
export async function assertNotLocked(dir: string): Promise<void> {
  const owner = await lockOwner(join(dir, LOCK_FILE));
  if (owner !== null && owner !== process.pid && processAlive(owner)) {
    throw new UserError(`${dir}: another qwen3-onnx run (pid ${owner}) is writing this model directory; wait for it to finish`);
  }
}
