import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tinyAlignerModelDir, tinyModelDir } from '../fixtures/test-support.js';
import { placeWords } from '../runtime/align-placement.js';
import { repairTimestamps } from '../runtime/align-repair.js';
import { splitWords } from '../runtime/align-words.js';
import { alignChunkBounds, MAX_ALIGN_CHUNK_SECONDS } from '../runtime/aligner.js';
import { loadAudio } from '../runtime/audio.js';
import { encodeWav } from '../runtime/wav-writer.js';
import { register, type AlignReport } from './align.js';
import { runCommand, runCommandResult } from './test-support.js';

/**
 * align --asr on audio longer than one aligner pass, end to end on the tiny ASR model and the tiny
 * aligner (random weights: the ASR text is junk, so the placement is whatever the edit distance
 * makes of it; what is checked is that every step from the WAV to the printed words holds together).
 */

const AUDIO = fileURLToPath(new URL('../../shared/audio/notld/', import.meta.url));
const CLIPS = ['119s_theres_supposed_to_be_another_broadcast', '60s_i_dont_want_anyones_life_on_my_hands', '10s_back_down_the_road'];
const SHORT = join(AUDIO, '5s_dont_worry_about_him.wav');

const align = (args: string[]): Promise<string> => runCommand(register, 'align', args);

let scratch: string;
let alignerDir: string;
let asrDir: string;
let longWav: string;
let longText: string;
let longSamples: Float32Array;
/** The silences after the clips, [start, end) in samples. */
const gaps: Array<[number, number]> = [];
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-align-long-'));
  [alignerDir, asrDir] = await Promise.all([tinyAlignerModelDir(), tinyModelDir()]);
  // 192 s: the three clips, each followed by 1 s of silence (the 180 s cut lands in the first gap).
  const parts: Float32Array[] = [];
  const texts: string[] = [];
  for (const clip of CLIPS) {
    parts.push((await loadAudio(join(AUDIO, `${clip}.wav`))).samples, new Float32Array(16000));
    texts.push(await readFile(join(AUDIO, `${clip}.txt`), 'utf8'));
  }
  longSamples = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const [i, p] of parts.entries()) {
    longSamples.set(p, at);
    if (i % 2 === 1) gaps.push([at, at + p.length]);
    at += p.length;
  }
  longWav = join(scratch, 'long.wav');
  await writeFile(longWav, encodeWav({ sampleRate: 16000, channels: [longSamples], encoding: 'float32' }));
  longText = texts.join('\n');
}, 300_000);
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

describe('qwen3-onnx align --asr on 192 s of audio', () => {
  it('cuts as transcribe --timestamps does, places every word in order and keeps each chunk\'s times inside it', async () => {
    const textFile = join(scratch, 'long.txt');
    await writeFile(textFile, longText);
    const stderr: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { stderr.push(String(chunk)); return true; });
    let stdout: string;
    try {
      stdout = await align(['--model-dir', alignerDir, '--asr', asrDir, '--language', 'English', '--text-file', textFile, '--threads', '1', '--json', longWav]);
    } finally {
      spy.mockRestore();
    }
    const report = JSON.parse(stdout) as AlignReport;
    const units = splitWords(longText, 'English');
    const bounds = alignChunkBounds(longSamples, MAX_ALIGN_CHUNK_SECONDS);
    expect(longSamples.length / 16000).toBeGreaterThan(MAX_ALIGN_CHUNK_SECONDS);
    expect(bounds.length).toBe(2);
    // The cut fell in the silence after the 119 s and 60 s clips.
    expect(bounds[0].end).toBeGreaterThanOrEqual(gaps[1][0]);
    expect(bounds[0].end).toBeLessThan(gaps[1][1]);

    const placement = report.placement;
    if (!placement) throw new Error('no placement in --json');
    expect(placement.chunks).toBe(bounds.length);
    expect(placement.perChunk.map((c) => [c.offsetS, c.durationS])).toEqual(bounds.map((b) => [b.start / 16000, (b.end - b.start) / 16000]));
    expect(placement.units).toBe(units.length);
    expect(placement.perChunk.reduce((n, c) => n + c.words, 0)).toBe(units.length);
    expect(placement.asrVariant).toBe('fp32');

    // The placement is the edit-distance one of the transcript against what the ASR printed per chunk.
    const asrUnits = placement.perChunk.map((c) => (c.asrText.trim() === '' ? [] : splitWords(c.asrText, 'English')));
    expect(placement.perChunk.map((c) => c.asrUnits)).toEqual(asrUnits.map((u) => u.length));
    const expected = placeWords(units, asrUnits.map((u, k) => ({ units: u, seconds: placement.perChunk[k].durationS })));
    expect(placement.exactMatches).toBe(expected.exactMatches);
    expect(placement.matchedShare).toBe(expected.matchedShare);
    const perChunk = placement.perChunk.map((_, k) => expected.chunkOf.filter((c) => c === k).length);
    expect(placement.perChunk.map((c) => c.words)).toEqual(perChunk);

    // Every unit, in transcript order; one aligned chunk per chunk that got words.
    expect(report.words.map((w) => w.text)).toEqual(units);
    const aligned = placement.perChunk.filter((c) => c.words > 0);
    expect(report.chunks.map((c) => [c.offsetS, c.words])).toEqual(aligned.map((c) => [c.offsetS, c.words]));

    // Each chunk's times: its repaired classes shifted by its offset, capped at its end, inside its span.
    let at = 0;
    let capped = 0;
    for (const c of report.chunks) {
      const fixed = repairTimestamps(c.classes.map((k) => k * 80));
      const end = round3(c.offsetS + c.durationS);
      report.words.slice(at, at + c.words).forEach((w, i) => {
        const start = round3(fixed[2 * i] / 1000 + c.offsetS);
        const stop = round3(fixed[2 * i + 1] / 1000 + c.offsetS);
        capped += (start > end ? 1 : 0) + (stop > end ? 1 : 0);
        expect(w.start_time).toBeCloseTo(Math.min(start, end), 3);
        expect(w.end_time).toBeCloseTo(Math.min(stop, end), 3);
        expect(w.start_time).toBeGreaterThanOrEqual(round3(c.offsetS));
        expect(w.end_time).toBeLessThanOrEqual(end);
      });
      at += c.words;
    }
    expect(at).toBe(units.length);
    expect(placement.cappedTimes).toBe(capped);
    const times = report.words.flatMap((w) => [w.start_time, w.end_time]);
    for (let i = 1; i < times.length; i += 1) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1]);

    // The tiny ASR's junk matches little of the transcript: a warning on stderr, never on stdout.
    const warnings = stderr.join('').split('\n').filter((l) => l.includes('warning'));
    if (placement.matchedShare < 0.5) {
      expect(warnings).toEqual([expect.stringMatching(/^qwen3-onnx: warning: only \d+% of the transcript's \d+ words match what .* heard in the audio; the transcript may not be what is said in it/)]);
    } else {
      expect(warnings).toEqual([]);
    }
    expect(stdout).not.toMatch(/warning/);
  }, 300_000);

  it('without --asr, audio over 180 s is refused in one line naming both ways out', async () => {
    await expect(align(['--model-dir', alignerDir, '--language', 'English', '--text', longText, longWav]))
      .rejects.toThrow(/^audio is 192\.0 s; align takes at most 180 s in one pass \(for longer audio give align --asr <dir>.*or use transcribe --timestamps --aligner/);
  });

  it('--asr is only loaded for long audio: a directory with just an ASR config.json passes short audio and fails on long', async () => {
    const configOnly = join(scratch, 'asr-config-only');
    await mkdir(configOnly);
    await copyFile(join(asrDir, 'config.json'), join(configOnly, 'config.json'));
    const report = JSON.parse(await align(['--model-dir', alignerDir, '--asr', configOnly, '--language', 'English', '--text', 'don\'t worry about him', '--json', SHORT])) as AlignReport;
    expect(report.words.map((w) => w.text)).toEqual(["don't", 'worry', 'about', 'him']);
    expect(report.placement).toBeUndefined();
    await expect(align(['--model-dir', alignerDir, '--asr', configOnly, '--language', 'English', '--text', longText, longWav]))
      .rejects.toThrow(/asr-config-only: (no embed_tokens\.bin|.*\.onnx is missing)/);
  });

  it('a wrong --asr is named in one line, also where the audio is short enough not to need it', async () => {
    const run = (asr: string) => runCommandResult(register, 'align', ['--model-dir', alignerDir, '--asr', asr, '--language', 'English', '--text', 'hello', SHORT]);
    const cases: Array<[string, RegExp]> = [
      [alignerDir, /^--asr: .* is a forced-aligner directory \(config\.json model_kind "forced_aligner"\), not a Qwen3-ASR model/],
      [join(scratch, 'missing-dir'), /^--asr: cannot read .*missing-dir: no such file or directory$/],
      [longWav, /^--asr .*long\.wav: not a directory/],
      [scratch, /^--asr: cannot read .*config\.json: no such file or directory$/],
    ];
    for (const [asr, message] of cases) {
      const { stdout, error } = await run(asr);
      expect(String((error as Error | undefined)?.message)).toMatch(message);
      expect(String((error as Error).message)).not.toMatch(/\n/);
      expect(stdout).toBe('');
    }
    // An ASR directory as --model-dir is still named as such, with --asr too.
    await expect(align(['--model-dir', asrDir, '--asr', asrDir, '--language', 'English', '--text', 'hello', SHORT])).rejects.toThrow(/is an ASR model directory, not a forced aligner/);
  });
});
