import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oneLineError, runCli, snapshotTree, treeChanges } from '../fixtures/hostile-support.js';
import { tinyModelDir } from '../fixtures/test-support.js';

/**
 * A variant that is asked for and absent is a one-line error naming the missing file, in every
 * command (once, `compare --variants fp32,int8` on a directory without int8 files compared fp32
 * with itself and passed). The split layout's one documented fallback, the float encoder serving
 * a quantised variant, still works.
 */

const JFK = join(import.meta.dirname, '..', '..', 'shared', 'audio', 'jfk.wav');

let work: string;
let floatOnly: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'qwen3-onnx-variants-'));
  floatOnly = join(work, 'model');
  await cp(await tinyModelDir(), floatOnly, { recursive: true });
});
afterAll(async () => { await rm(work, { recursive: true, force: true }); });

async function expectMissing(args: string[], message: RegExp): Promise<void> {
  const before = snapshotTree(work);
  const r = await runCli(args);
  expect(r.code, r.stderr).not.toBe(0);
  expect(oneLineError(r)).toMatch(message);
  expect(treeChanges(before, snapshotTree(work))).toEqual([]);
}

describe('an absent variant is refused in one line naming the missing file', () => {
  it('compare', async () => {
    await expectMissing(['compare', '--model-dir', floatOnly, '--variants', 'fp32,int8', JFK], /variant int8 has no decoder_init\.int8\.onnx/);
  });
  it('transcribe', async () => {
    await expectMissing(['transcribe', '--model-dir', floatOnly, '--variant', 'int4', JFK], /variant int4 has no decoder_init\.int4\.onnx/);
  });
  it('wer', async () => {
    const manifest = join(work, 'manifest.tsv');
    await writeFile(manifest, `${JFK}\tand so my fellow americans\n`);
    await expectMissing(['wer', '--model-dir', floatOnly, '--variant', 'int8', '--manifest', manifest], /variant int8 has no decoder_init\.int8\.onnx/);
  });
  it('package', async () => {
    await expectMissing(['package', '--model-dir', floatOnly, '--variant', 'int4', '--output', join(work, 'dist')], /variant int4 has no decoder_init\.int4\.onnx/);
  });
  it('verify-package', async () => {
    await expectMissing(['verify-package', join(work, 'dist', 'qwen3-asr-tiny-int4.tar.gz')], /qwen3-asr-tiny-int4\.tar\.gz: no such file or directory/);
  });
});

describe('the split layout\'s fallback: the float encoder serves a quantised variant', () => {
  it('quantize writes no encoder of its own, and transcribe and package of int4 use encoder.onnx', async () => {
    const q = await runCli(['quantize', '--model-dir', floatOnly, '--quiet']);
    expect(q.code, q.stderr).toBe(0);
    const t = await runCli(['transcribe', '--model-dir', floatOnly, '--variant', 'int4', '--max-new-tokens', '4', '--json', JFK]);
    expect(t.code, t.stderr).toBe(0);
    const p = await runCli(['package', '--model-dir', floatOnly, '--variant', 'int4', '--output', join(work, 'dist'), '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain('encoder.onnx');
    expect(p.stdout).not.toContain('encoder.int4.onnx');
  });
});
