import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { register, type TranscribeReport } from './transcribe.js';
import { runCommand } from './test-support.js';

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const JFK = join(AUDIO, 'jfk.wav');
const SHORT = join(AUDIO, 'notld/5s_dont_worry_about_him.wav');

/** Runs `qwen3-onnx transcribe ...args` in-process; returns stdout. */
const run = (args: string[]): Promise<string> => runCommand(register, 'transcribe', args);

let modelDir: string;
let scratch: string;
beforeAll(async () => {
  modelDir = await tinyModelDir();
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-cli-transcribe-'));
});
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

describe('qwen3-onnx transcribe', () => {
  it('--json gives tokens, text, language and timings per file', async () => {
    const report = JSON.parse(await run(['--model-dir', modelDir, '--max-new-tokens', '4', '--threads', '1', '--json', JFK, SHORT])) as TranscribeReport;
    expect(report.variant).toBe('fp32');
    expect(report.loadMs).toBeGreaterThan(0);
    expect(report.files.map((f) => f.file)).toEqual([JFK, SHORT]);
    for (const f of report.files) {
      expect(f.tokens.length).toBeGreaterThan(0);
      expect(f.tokens.length).toBeLessThanOrEqual(4);
      expect(typeof f.text).toBe('string');
      expect(typeof f.language).toBe('string');
      expect(f.timings.stepMs.length).toBe(f.tokens.length - 1);
      expect(f.timings.encoderMs).toBeGreaterThan(0);
      expect(f.audioSeconds).toBeGreaterThan(4);
    }
    // Human output of one file is its text alone.
    const human = await run(['--model-dir', modelDir, '--max-new-tokens', '4', SHORT]);
    expect(human).toBe(`${report.files[1].text}\n`);
  });

  it('forces a language (normalised) and reports it', async () => {
    const report = JSON.parse(await run(['--model-dir', modelDir, '--max-new-tokens', '2', '--language', 'english', '--json', SHORT])) as TranscribeReport;
    expect(report.files[0].language).toBe('English');
  });

  it('fails with one-line errors for bad input', async () => {
    const bad = join(scratch, 'bad.wav');
    await writeFile(bad, 'RIFF....WAVEfmt ');
    await expect(run(['--model-dir', modelDir, bad])).rejects.toThrow(UserError);
    await expect(run(['--model-dir', modelDir, bad])).rejects.toThrow(/bad\.wav: /);
    await expect(run(['--model-dir', modelDir, '--language', 'Klingon', SHORT])).rejects.toThrow(/unsupported language "Klingon"/);
    await expect(run(['--model-dir', join(scratch, 'nope'), SHORT])).rejects.toThrow(/nope[/\\]config\.json: no such file/);
    // int8 is a variant (quantize --bits 8 writes it); absent here, it is named, not taken from fp32.
    await expect(run(['--model-dir', modelDir, '--variant', 'int8', SHORT])).rejects.toThrow(/variant int8 has no decoder_init\.int8\.onnx/);
    await expect(run(['--model-dir', modelDir, '--variant', 'int3', SHORT])).rejects.toThrow(CommanderError);
    await expect(run(['--model-dir', modelDir, '--max-new-tokens', '0', SHORT])).rejects.toThrow(CommanderError);
    await expect(run([SHORT])).rejects.toThrow(CommanderError);
  });

  it('--max-segment-seconds: bounded to 1-1200 s, and it decides how long audio is cut', async () => {
    for (const bad of ['0', '1201', 'abc', '', '-5']) {
      await expect(run(['--model-dir', modelDir, '--max-segment-seconds', bad, SHORT])).rejects.toThrow(/--max-segment-seconds must be a number of seconds from 1 to 1200/);
    }
    const report = JSON.parse(await run(['--model-dir', modelDir, '--max-new-tokens', '1', '--max-segment-seconds', '4', '--json', JFK])) as TranscribeReport;
    const segments = report.files[0].segments;
    // 11 s of speech in nominal 4 s pieces (each cut within +-5 s of its nominal point).
    expect(segments.length).toBeGreaterThanOrEqual(2);
    expect(segments.every((s) => s.durationS <= 9)).toBe(true);
    expect(segments.reduce((t, s) => t + s.durationS, 0)).toBeCloseTo(report.files[0].audioSeconds, 6);
    const whole = JSON.parse(await run(['--model-dir', modelDir, '--max-new-tokens', '1', '--json', JFK])) as TranscribeReport;
    expect(whole.files[0].segments.length).toBe(1);
  });
});
