import { constants } from 'node:fs';
import { access, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { UserError, fsError } from './errors.js';

/**
 * Checks on where a run may write, done before any work: an output must not be, contain or sit
 * inside one of the run's inputs, and its folder must be one this user can write.
 */

/** `p` with symbolic links resolved, also when its last parts do not exist yet. */
export async function realPathOf(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    if (parent === abs) return abs;
    return join(await realPathOf(parent), basename(abs));
  }
}

function within(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Refuses an output that is, contains or sits inside an input (both compared with links resolved).
 * `flag` and `inputFlag` name the options at fault in the message.
 */
export async function assertOutputApart(output: string, flag: string, inputs: readonly { path: string; flag: string }[]): Promise<void> {
  const out = await realPathOf(output);
  for (const input of inputs) {
    const inp = await realPathOf(input.path);
    if (out === inp) throw new UserError(`${flag} ${output}: is the input ${input.flag} ${input.path}; choose another output`);
    if (within(inp, out)) throw new UserError(`${flag} ${output}: contains the input ${input.flag} ${input.path}; choose another output`);
    if (within(out, inp)) throw new UserError(`${flag} ${output}: lies inside the input ${input.flag} ${input.path}; choose another output`);
  }
}

/**
 * Checks that `dir` can be created or written: its nearest existing ancestor must be a directory
 * this user may write (or `dir` itself, when it exists, must be one).
 */
export async function assertWritableDir(dir: string, flag: string): Promise<void> {
  let p = resolve(dir);
  for (;;) {
    let s;
    try { s = await stat(p); } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fsError(`${flag}`, p, err);
      const parent = dirname(p);
      if (parent === p) throw new UserError(`${flag} ${dir}: no existing parent folder`);
      p = parent;
      continue;
    }
    if (!s.isDirectory()) throw new UserError(`${flag} ${dir}: ${p} exists and is not a directory`);
    try {
      await access(p, constants.W_OK | constants.X_OK);
    } catch {
      throw new UserError(`${flag} ${dir}: ${p} is not writable (permission denied or read-only file system)`);
    }
    return;
  }
}
