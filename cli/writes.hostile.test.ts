import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../fixtures/safetensors-writer.js';
import { tinyCheckpointDir, tinyModelDir } from '../fixtures/test-support.js';
import { sweepDeadRunDebris } from '../common/debris.js';
import { settleModelDir } from '../model-dir/files.js';
import {
  type CliRun, debrisIn, oneLineError, runCli, runCliAndKill, snapshotTree, treeChanges, withTmpfs,
} from '../fixtures/hostile-support.js';

/**
 * Hostile use of the commands that write model directories (issue 17, classes 1-4 and 7): outputs
 * that overlap inputs, --overwrite on folders the tool did not write, full and read-only disks,
 * interrupts and kills, concurrent writers, unbounded flags. Every failing run must print one
 * line, exit non-zero, leave no temp file and leave every file that was there byte-identical.
 */

let work: string;
let ckpt: string;
let model: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'qwen3-onnx-hostile-writes-'));
  ckpt = await tinyCheckpointDir();
  model = await tinyModelDir();
});
afterAll(async () => { await rm(work, { recursive: true, force: true }); });

async function freshDir(name: string): Promise<string> {
  const d = join(work, name);
  await rm(d, { recursive: true, force: true });
  await mkdir(d, { recursive: true });
  return d;
}

/** Runs a command that must fail and checks the failure contract on the folder `watched`. */
async function expectRefusal(args: string[], watched: string, message: RegExp): Promise<void> {
  const before = snapshotTree(watched);
  const r = await runCli(args);
  expect(r.code, r.stderr).toBe(1);
  expect(oneLineError(r)).toMatch(message);
  expect(treeChanges(before, snapshotTree(watched))).toEqual([]);
  expect(debrisIn(watched)).toEqual([]);
}

/** Whether `dir` is exactly the old state or exactly the new one (anything else fails, listing the mix). */
function expectOldOrNew(dir: string, oldState: Map<string, string>, newState: Map<string, string>, when: string): 'old' | 'new' {
  const now = snapshotTree(dir);
  if (treeChanges(oldState, now).length === 0) return 'old';
  if (treeChanges(newState, now).length === 0) return 'new';
  throw new Error(`${when}: ${dir} is neither the old state nor the new one: ${treeChanges(oldState, now).join(', ')}`);
}

describe('export never deletes or replaces what it did not write', () => {
  it('refuses an output folder that contains the checkpoint (and an unrelated file), even with --overwrite', async () => {
    const sac2 = await freshDir('sac2');
    await cp(ckpt, join(sac2, 'ckpt'), { recursive: true });
    await writeFile(join(sac2, 'thesis.tex'), '\\documentclass{article}');
    await expectRefusal(['export', '--model', join(sac2, 'ckpt'), '--output', sac2, '--overwrite'], sac2,
      /^--output .*sac2: contains the input --model .*ckpt; choose another output$/);
  });

  it('refuses --output equal to --model, and an output inside the checkpoint', async () => {
    const d = await freshDir('same');
    await cp(ckpt, join(d, 'ckpt'), { recursive: true });
    const c = join(d, 'ckpt');
    await expectRefusal(['export', '--model', c, '--output', c, '--overwrite'], d, /: is the input --model .*; choose another output$/);
    await expectRefusal(['export', '--model', c, '--output', join(c, 'onnx')], d, /: lies inside the input --model /);
    // Through a symbolic link too.
    execFileSync('ln', ['-s', c, join(d, 'link')]);
    await expectRefusal(['export', '--model', join(d, 'link'), '--output', join(c, 'out')], d, /: lies inside the input --model /);
  });

  it('--overwrite replaces only a model directory it wrote, with nothing foreign in it', async () => {
    const d = await freshDir('overwrite');
    const out = join(d, 'model');
    await cp(model, out, { recursive: true });
    await writeFile(join(out, 'notes.txt'), 'my notes');
    await expectRefusal(['export', '--model', ckpt, '--output', out, '--overwrite'], d,
      /^--output .*model: holds notes\.txt, which qwen3-onnx did not write; refusing to replace the directory \(move it away first\)$/);

    const plain = join(d, 'plain');
    await mkdir(plain);
    await writeFile(join(plain, 'data.csv'), '1,2,3');
    await expectRefusal(['export', '--model', ckpt, '--output', plain, '--overwrite'], d,
      /^--output .*plain: not a model directory written by qwen3-onnx \(no export-record\.json\); refusing to replace it$/);
    await expectRefusal(['export', '--model', ckpt, '--output', plain], d, /directory exists and is not empty \(pass --overwrite to replace it\)$/);

    await rm(join(out, 'notes.txt'));
    const r = await runCli(['export', '--model', ckpt, '--output', out, '--overwrite', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(d).sort()).toEqual(['model', 'plain']);
    expect(debrisIn(d)).toEqual([]);
  });

  it('fixtures --force replaces only a checkpoint that fixtures wrote', async () => {
    const d = await freshDir('fixtures-force');
    const thesis = join(d, 'thesis');
    await mkdir(thesis);
    await writeFile(join(thesis, 'thesis.tex'), 'chapter 1');
    await expectRefusal(['fixtures', '--preset', 'tiny', '--output', thesis, '--force'], d,
      /^--output .*thesis: holds thesis\.tex, which qwen3-onnx fixtures did not write; refusing to replace the directory$/);
    // A checkpoint-shaped folder whose weights lack the fixture mark (a real download, say).
    const real = join(d, 'real');
    await mkdir(real);
    await writeFile(join(real, 'config.json'), '{}');
    await writeSafetensors(join(real, 'model.safetensors'), [{ name: 'w', dtype: 'BF16', shape: [2], chunks: function* () { yield new Uint8Array(4); } }]);
    await expectRefusal(['fixtures', '--preset', 'tiny', '--output', real, '--force'], d,
      /^--output .*real: not a checkpoint written by qwen3-onnx fixtures; refusing to replace it$/);
    // Its own output it replaces.
    const own = join(d, 'own');
    expect((await runCli(['fixtures', '--preset', 'tiny', '--output', own, '--quiet'])).code).toBe(0);
    const r = await runCli(['fixtures', '--preset', 'tiny', '--seed', '3', '--output', own, '--force', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(d).sort()).toEqual(['own', 'real', 'thesis']);
  });

  it('an output path that is a file, or under a file, is one line before any work', async () => {
    const d = await freshDir('file-out');
    await writeFile(join(d, 'out'), 'a file');
    await expectRefusal(['export', '--model', ckpt, '--output', join(d, 'out')], d, /^--output .*out: exists and is not a directory$/);
    await expectRefusal(['export', '--model', ckpt, '--output', join(d, 'out', 'x')], d, /out is not a directory|exists and is not a directory/);
  });
});

describe('I/O failures are one line naming the path, with the temp files removed', () => {
  it('export onto a full disk', async () => {
    await withTmpfs(5, async (disk) => {
      const r = await runCli(['export', '--model', ckpt, '--output', join(disk, 'model')]);
      expect(r.code).toBe(1);
      expect(oneLineError(r)).toMatch(/^cannot write .*: no space left on device$/);
      expect(readdirSync(disk)).toEqual([]);
    }, { parent: work });
  });

  it('fixtures onto a full disk', async () => {
    await withTmpfs(5, async (disk) => {
      const r = await runCli(['fixtures', '--preset', 'tiny', '--output', join(disk, 'ckpt')]);
      expect(r.code).toBe(1);
      expect(oneLineError(r)).toMatch(/: no space left on device$/);
      expect(readdirSync(disk)).toEqual([]);
    }, { parent: work });
  });

  it('quantize in a model directory whose disk fills up leaves the directory as it was', async () => {
    const size = Math.ceil(Number(execFileSync('du', ['-sm', model], { encoding: 'utf8' }).split('\t')[0]) + 4);
    await withTmpfs(size, async (disk) => {
      const dir = join(disk, 'model');
      await cp(model, dir, { recursive: true });
      const before = snapshotTree(disk);
      const r = await runCli(['quantize', '--model-dir', dir, '--threads', '1']);
      expect(r.code).toBe(1);
      expect(oneLineError(r)).toMatch(/^cannot write .*: no space left on device$/);
      expect(treeChanges(before, snapshotTree(disk))).toEqual([]);
      expect(debrisIn(disk)).toEqual([]);
    }, { parent: work });
  });

  it('a read-only file system and a folder without write permission', async () => {
    await withTmpfs(1, async (ro) => {
      const r = await runCli(['export', '--model', ckpt, '--output', join(ro, 'model')]);
      expect(r.code).toBe(1);
      expect(oneLineError(r)).toMatch(/^--output .*model: .* is not writable \(permission denied or read-only file system\)$/);
    }, { parent: work, readOnly: true });
    // As an unprivileged user (root may write anywhere): a folder the user cannot write.
    const d = await freshDir('no-write');
    await chmod(work, 0o755);
    await chmod(d, 0o555);
    const r = await runCli(['export', '--model', ckpt, '--output', join(d, 'model')], { uid: 65534 });
    expect(r.code).toBe(1);
    expect(oneLineError(r)).toMatch(/is not writable \(permission denied or read-only file system\)$/);
    await chmod(d, 0o755);
  });
});

describe('interrupts clean up; kills are swept by the next run', () => {
  const stagingIn = (d: string): boolean => readdirSync(d).some((n) => /\.tmp-\d+-/.test(n));

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal} during export removes its partial output`, async () => {
      const d = await freshDir(`sig-${signal}`);
      const r = await runCliAndKill(['export', '--model', ckpt, '--output', join(d, 'model')], { signal, when: () => stagingIn(d) });
      expect(r.killed).toBe(true);
      expect(r.code).toBe(code);
      expect(oneLineError(r)).toBe(`interrupted (${signal}); partial output removed`);
      expect(readdirSync(d)).toEqual([]);
    });
  }

  it('SIGKILL during export leaves debris that the next run into the same folder removes', async () => {
    const d = await freshDir('sigkill-export');
    const r = await runCliAndKill(['export', '--model', ckpt, '--output', join(d, 'model')], { signal: 'SIGKILL', when: () => stagingIn(d) });
    expect(r.signal).toBe('SIGKILL');
    expect(debrisIn(d).length).toBeGreaterThan(0);
    const again = await runCli(['export', '--model', ckpt, '--output', join(d, 'other'), '--quiet']);
    expect(again.code, again.stderr).toBe(0);
    expect(readdirSync(d)).toEqual(['other']);
  });

  it('export --overwrite killed at any point leaves the old model directory or the new one, never a mix', async () => {
    const d = await freshDir('kill-export');
    const out = join(d, 'model');
    const ref = join(d, 'ref');
    expect((await runCli(['export', '--model', ckpt, '--output', ref, '--quiet'])).code).toBe(0);
    const newState = snapshotTree(ref);
    await rm(ref, { recursive: true });
    // The old state differs from the new one (float32 embed table), so a mix would show.
    expect((await runCli(['export', '--model', ckpt, '--output', out, '--embed-dtype', 'float32', '--quiet'])).code).toBe(0);
    const oldState = snapshotTree(out);
    const seen = new Set<string>();
    for (const afterMs of [300, 900, 1500, 2200, 3000, 4500]) {
      const r = await runCliAndKill(['export', '--model', ckpt, '--output', out, '--overwrite'], { signal: 'SIGKILL', afterMs });
      // The next run into the folder settles what the killed one left (as every writer does first).
      sweepDeadRunDebris(d);
      expect(readdirSync(d), `after ${afterMs} ms`).toEqual(['model']);
      const state = expectOldOrNew(out, oldState, newState, `after ${afterMs} ms (exit ${r.code ?? r.signal})`);
      seen.add(state);
      if (state === 'new') expect((await runCli(['export', '--model', ckpt, '--output', out, '--embed-dtype', 'float32', '--overwrite', '--quiet'])).code).toBe(0);
    }
    expect(seen.has('old')).toBe(true);
  });

  it('quantize killed at any point leaves the old int4 set or the new one, never a mix', async () => {
    const d = await freshDir('kill-quantize');
    const dir = join(d, 'model');
    await cp(model, dir, { recursive: true });
    // Reference states: the block-32 set that is there, and the block-128 set a full run makes.
    const ref = join(d, 'ref');
    await cp(model, ref, { recursive: true });
    expect((await runCli(['quantize', '--model-dir', ref, '--block-size', '128', '--quiet'])).code).toBe(0);
    const newState = snapshotTree(ref);
    await rm(ref, { recursive: true });
    expect((await runCli(['quantize', '--model-dir', dir, '--block-size', '32', '--quiet'])).code).toBe(0);
    const oldState = snapshotTree(dir);
    expect(newState.get('decoder_weights.int4.data')).not.toBe(oldState.get('decoder_weights.int4.data'));

    const seen = new Set<string>();
    // Kill points spread over start-up, rounding, writing and the commit (a tiny quantize takes ~2-4 s here).
    for (const afterMs of [300, 800, 1300, 1800, 2400, 3200]) {
      const r = await runCliAndKill(['quantize', '--model-dir', dir, '--block-size', '128', '--threads', '1'], { signal: 'SIGKILL', afterMs });
      // What a reader finds after the kill (every reader settles the folder first, as the next run does).
      settleModelDir(dir);
      const state = expectOldOrNew(dir, oldState, newState, `after ${afterMs} ms (exit ${r.code ?? r.signal})`);
      seen.add(state);
      if (state === 'new') {
        // Back to the old set for the next round.
        expect((await runCli(['quantize', '--model-dir', dir, '--block-size', '32', '--quiet'])).code).toBe(0);
      }
    }
    expect(seen.has('old')).toBe(true);
  });

  it('a second writer is refused while one holds the model directory; a dead holder\'s lock is taken over', async () => {
    const d = await freshDir('lock');
    const dir = join(d, 'model');
    await cp(model, dir, { recursive: true });
    const lockFile = join(dir, '.qwen3-onnx.lock');
    let second: Promise<CliRun> | undefined;
    // The first run is stopped (SIGSTOP) while it holds the lock and resumed once the second has
    // ended: on a fast machine a tiny quantize would otherwise finish before the second one starts.
    const first = await runCliAndKill(['quantize', '--model-dir', dir, '--threads', '1', '--quiet'], {
      signal: 'SIGSTOP',
      when: () => {
        if (second || !existsSync(lockFile)) return false;
        const holder = Number(readFileSync(lockFile, 'utf8').trim());
        if (!Number.isInteger(holder) || holder <= 0) return false;
        second = runCli(['quantize', '--model-dir', dir, '--bits', '8', '--quiet']).finally(() => process.kill(holder, 'SIGCONT'));
        return true;
      },
    });
    expect(first.code, first.stderr).toBe(0);
    expect(second).toBeDefined();
    const refused = await second!;
    expect(refused.code).toBe(1);
    expect(oneLineError(refused)).toMatch(/model: another qwen3-onnx run \(pid \d+\) is writing this model directory; wait for it to finish$/);
    expect(existsSync(lockFile)).toBe(false);
    expect(existsSync(join(dir, 'decoder_step.int8.onnx'))).toBe(false);

    // A lock whose process is gone does not block anyone.
    const dead = execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await writeFile(lockFile, `${dead}\n`);
    const r = await runCli(['quantize', '--model-dir', dir, '--bits', '8', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(lockFile)).toBe(false);
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).quantization).toMatchObject({ decoder_init: expect.any(String), 'decoder_init.int8': expect.any(String) });
    expect(statSync(join(dir, 'decoder_step.int8.onnx')).size).toBeGreaterThan(0);
  });
});

describe('flags are bounded and unknown ones are named', () => {
  const cases: [string, string[], RegExp][] = [
    ['--threads 100000', ['quantize', '--model-dir', '.', '--threads', '100000'], /--threads must be an integer from 1 to 256, got "100000"/],
    ['--threads -1', ['quantize', '--model-dir', '.', '--threads', '-1'], /--threads must be an integer from 1 to 256, got "-1"/],
    ['--threads 0 on transcribe', ['transcribe', '--model-dir', '.', '--threads', '0', 'x.wav'], /--threads must be an integer from 1 to 256, got "0"/],
    ['--block-size 1048576', ['quantize', '--model-dir', '.', '--block-size', '1048576'], /--block-size must be a power of two >= 16 and <= 256 \(MatMulNBits\), got 1048576/],
    ['the typo --outptu', ['export', '--model', 'x', '--outptu', 'y'], /^export: unknown option '--outptu' \(did you mean --output\?\) \(run with --help for usage\)$/],
    ['a missing required option', ['export', '--model', 'x'], /^required option '--output <dir>' not specified \(run with --help for usage\)$/],
    ['an unknown command', ['exprot'], /^unknown command 'exprot'/],
  ];
  for (const [what, args, message] of cases) {
    it(`${what}: one line, exit 1`, async () => {
      const d = join(work, 'flags');
      const r = await runCli(args, { cwd: existsSync(d) ? d : work });
      expect(r.code).toBe(1);
      expect(oneLineError(r)).toMatch(message);
      expect(r.stdout).toBe('');
    });
  }
});

describe('build refuses an output that overlaps its checkpoint', () => {
  it('before any work, with nothing written', async () => {
    const d = await freshDir('build-overlap');
    await cp(ckpt, join(d, 'ckpt'), { recursive: true });
    await writeFile(join(d, 'notes.md'), 'mine');
    await expectRefusal(['build', '--model', join(d, 'ckpt'), '--output', d], d, /^--output .*build-overlap: contains the input --model .*ckpt; choose another output$/);
    await expectRefusal(['build', '--model', join(d, 'ckpt'), '--output', join(d, 'ckpt', 'out')], d, /: lies inside the input --model /);
  });

  it('a build that fails removes every folder it created, parents included', async () => {
    const d = await freshDir('build-fails');
    // A hub id that is not in the (empty) cache, offline: fails after build made out/x/ for itself.
    const r = await runCli(['build', '--model', 'Qwen/Qwen3-ASR-0.6B', '--output', join(d, 'out', 'x')],
      { env: { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: join(d, 'cache') } });
    expect(r.code).toBe(1);
    expect(oneLineError(r)).toMatch(/Qwen\/Qwen3-ASR-0\.6B/);
    expect(readdirSync(d)).toEqual([]);
  });
});
