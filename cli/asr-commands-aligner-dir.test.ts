import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyAlignerModelDir } from '../fixtures/test-support.js';
import { register as registerCalibrate } from './calibrate.js';
import { register as registerCompare } from './compare.js';
import { runCommandResult } from './test-support.js';
import { register as registerTranscribe } from './transcribe.js';

/**
 * The commands that run an ASR model directory (transcribe, compare, calibrate) given a forced-aligner
 * directory: one line saying what it is and where it belongs, not a missing decoder_init.onnx.
 */

const SHORT = fileURLToPath(new URL('../../shared/audio/notld/5s_dont_worry_about_him.wav', import.meta.url));
const ALIGNER_DIR_LINE = /^(.*) is a forced-aligner directory \(config\.json model_kind "forced_aligner"\), not a Qwen3-ASR model; use it with align --model-dir, or transcribe --timestamps --aligner$/;

let alignerDir: string;
let scratch: string;
beforeAll(async () => {
  alignerDir = await tinyAlignerModelDir();
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-aligner-dir-'));
}, 300_000);
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

describe('an aligner directory given to an ASR command is named in one line', () => {
  // [test name, command, its registration, its arguments once the fixtures exist]
  const cases: Array<[string, string, (program: Command) => void, () => string[]]> = [
    ['transcribe', 'transcribe', registerTranscribe, () => ['--model-dir', alignerDir, SHORT]],
    ['transcribe --timestamps --aligner (the same dir)', 'transcribe', registerTranscribe, () => ['--model-dir', alignerDir, '--timestamps', '--aligner', alignerDir, SHORT]],
    ['compare', 'compare', registerCompare, () => ['--model-dir', alignerDir, '--variants', 'fp32,int4', SHORT]],
    ['compare --components', 'compare', registerCompare, () => ['--model-dir', alignerDir, '--variants', 'fp32,int4', '--components', SHORT]],
    ['calibrate (writes nothing)', 'calibrate', registerCalibrate, () => ['--model-dir', alignerDir, '--audio', SHORT, '--output', join(scratch, 'stats.json')]],
  ];
  for (const [name, command, register, args] of cases) {
    it(name, async () => {
      const { stdout, error } = await runCommandResult(register, command, args());
      const message = String((error as Error | undefined)?.message);
      expect(message).toMatch(ALIGNER_DIR_LINE);
      expect(ALIGNER_DIR_LINE.exec(message)?.[1]).toBe(alignerDir);
      expect(stdout).toBe('');
      expect(await readdir(scratch)).toEqual([]);
    });
  }
});
