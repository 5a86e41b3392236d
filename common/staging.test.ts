import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AtomicFileWriter } from './atomic.js';
import { trackedTemps } from './cleanup.js';
import { COMMIT_MARK, sweepDeadRunDebris } from './debris.js';
import { UserError } from './errors.js';
import { StagedDir, StagedFiles } from './staging.js';

/** A pid that belonged to a process that has exited (what a SIGKILLed run leaves in temp names). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'qwen3-onnx-staging-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

const list = async (d: string): Promise<string[]> => (await readdir(d)).sort();

describe('AtomicFileWriter', () => {
  it('a failed stream aborts and commits with one error instead of hanging', async () => {
    const target = join(dir, 'sub', 'file.bin');
    const w = await AtomicFileWriter.create(target);
    await rm(join(dir, 'sub'), { recursive: true }); // the temp file can no longer be created
    await new Promise((r) => setTimeout(r, 50));
    const err = await w.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^cannot write .*file\.bin: no such file or directory$/);
    const w2 = await AtomicFileWriter.create(join(dir, 'other', 'x'));
    await rm(join(dir, 'other'), { recursive: true });
    await w2.write(new Uint8Array(10)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    await expect(w2.abort()).resolves.toBeUndefined(); // used to wait forever for a second 'close'
    expect(trackedTemps().filter((p) => p.startsWith(dir))).toEqual([]);
  });
});

describe('StagedFiles', () => {
  it('moves every staged file in on commit and nothing on abort', async () => {
    await writeFile(join(dir, 'a.onnx'), 'old a');
    const s = await StagedFiles.create(dir, 'set');
    await writeFile(s.fileFor('a.onnx'), 'new a');
    await writeFile(s.fileFor('b.data'), 'new b');
    expect(await list(dir)).toHaveLength(2); // a.onnx + the staging folder
    expect(await s.commit()).toEqual(['a.onnx', 'b.data']);
    expect(await list(dir)).toEqual(['a.onnx', 'b.data']);
    expect(await readFile(join(dir, 'a.onnx'), 'utf8')).toBe('new a');

    const t = await StagedFiles.create(dir, 'set');
    await writeFile(t.fileFor('a.onnx'), 'newer a');
    await t.abort();
    expect(await list(dir)).toEqual(['a.onnx', 'b.data']);
    expect(await readFile(join(dir, 'a.onnx'), 'utf8')).toBe('new a');
  });

  it('a dead run killed after marking its set is rolled forward by the next sweep; one killed before is removed', async () => {
    const pid = deadPid();
    await writeFile(join(dir, 'a.onnx'), 'old a');
    await writeFile(join(dir, 'b.data'), 'old b');
    const marked = join(dir, `.quantize-int4.tmp-${pid}-1abc`);
    await mkdir(marked);
    await writeFile(join(marked, 'b.data'), 'new b'); // a.onnx already renamed in when the kill came
    await writeFile(join(dir, 'a.onnx'), 'new a');
    await writeFile(join(marked, COMMIT_MARK), '');
    const unmarked = join(dir, `.quantize-int8.tmp-${pid}-2abc`);
    await mkdir(unmarked);
    await writeFile(join(unmarked, 'a.onnx'), 'half');
    const halfFile = join(dir, `.config.json.tmp-${pid}-3abc`);
    await writeFile(halfFile, '{');
    const live = join(dir, `.config.json.tmp-${process.pid}-4abc`); // this run's own: never touched
    await writeFile(live, 'mine');

    expect(sweepDeadRunDebris(dir)).toHaveLength(3);
    expect(await list(dir)).toEqual([`.config.json.tmp-${process.pid}-4abc`, 'a.onnx', 'b.data']);
    expect(await readFile(join(dir, 'a.onnx'), 'utf8')).toBe('new a');
    expect(await readFile(join(dir, 'b.data'), 'utf8')).toBe('new b');
    await rm(live);
  });

  it('leaves files that only look alike alone', async () => {
    for (const n of ['.notes.tmp', 'x.tmp-123-abc', '.a.tmp-notapid-abc', 'thesis.tex']) await writeFile(join(dir, n), n);
    expect(sweepDeadRunDebris(dir)).toEqual([]);
    expect(await list(dir)).toHaveLength(4);
  });
});

describe('StagedDir', () => {
  it('swaps a new folder in for an old one as a whole', async () => {
    const out = join(dir, 'out');
    await mkdir(out);
    await writeFile(join(out, 'old.txt'), 'old');
    const s = await StagedDir.create(out);
    await writeFile(join(s.path, 'new.txt'), 'new');
    await s.commit();
    expect(await list(out)).toEqual(['new.txt']);
    expect(await list(dir)).toEqual(['out']);
  });

  it('a swap killed between its two renames is finished by the next sweep', async () => {
    const pid = deadPid();
    const staged = join(dir, `.out.tmp-${pid}-9f`);
    await mkdir(staged);
    await writeFile(join(staged, 'new.txt'), 'new');
    await mkdir(`${staged}.old`);
    await writeFile(join(`${staged}.old`, 'old.txt'), 'old'); // out/ was moved aside, the new one not yet in
    sweepDeadRunDebris(dir);
    expect(await list(dir)).toEqual(['out']);
    expect(await list(join(dir, 'out'))).toEqual(['new.txt']);

    // Killed after the second rename: only the aside copy is left to remove.
    await mkdir(`${staged}.old`);
    sweepDeadRunDebris(dir);
    expect(await list(dir)).toEqual(['out']);
    // An unfinished build (no aside copy) is simply removed.
    await mkdir(staged);
    await rename(join(dir, 'out'), join(dir, 'kept'));
    sweepDeadRunDebris(dir);
    expect(await list(dir)).toEqual(['kept']);
  });
});
