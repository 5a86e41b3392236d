import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyAlignerModelDir, tinyModelDir } from '../fixtures/test-support.js';
import { repairTimestamps } from '../runtime/align-repair.js';
import { splitWords } from '../runtime/align-words.js';
import { loadAudio } from '../runtime/audio.js';
import { audioTokenCount } from '../runtime/decode.js';
import { melFrameCount } from '../runtime/mel.js';
import { register as registerAlign, type AlignReport } from './align.js';
import { register as registerQuantize } from './quantize.js';
import { runCommand } from './test-support.js';
import { register as registerTranscribe, type TranscribeReport } from './transcribe.js';
import type { FileTimestamps } from './transcribe-timestamps.js';

/**
 * align and transcribe --timestamps end to end on the real export of the tiny synthetic aligner
 * (fixtures --preset aligner-tiny, then export): random weights, so the times mean nothing, but
 * every step the command takes from the WAV to the printed words runs for real.
 */

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const JFK = join(AUDIO, 'jfk.wav');
/** On this clip the tiny aligner's classes vary (on most real clips it picks one class everywhere). */
const CLIP = join(AUDIO, 'notld/5s_dont_worry_about_him.wav');

const align = (args: string[]): Promise<string> => runCommand(registerAlign, 'align', args);
const transcribe = (args: string[]): Promise<string> => runCommand(registerTranscribe, 'transcribe', args);

let scratch: string;
let alignerDir: string;
let clipText: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-align-e2e-'));
  alignerDir = await tinyAlignerModelDir();
  clipText = await readFile(CLIP.replace(/\.wav$/, '.txt'), 'utf8');
});
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

/** Seconds of `00:00:01,240` / `00:00:01.240`. */
const clock = (s: string): number => {
  const [h, m, rest] = s.split(':');
  return Number(h) * 3600 + Number(m) * 60 + Number(rest.replace(',', '.'));
};

describe('qwen3-onnx align on the exported tiny aligner', () => {
  it('--json: the official units, one class pair per unit, times = repaired class x 80 ms', async () => {
    const report = JSON.parse(await align(['--model-dir', alignerDir, '--language', 'English', '--text', clipText, '--threads', '1', '--json', CLIP])) as AlignReport;
    const units = splitWords(clipText, 'English');
    expect(report.words.map((w) => w.text)).toEqual(units);
    expect(report.chunks.length).toBe(1);
    const chunk = report.chunks[0];
    const { samples } = await loadAudio(CLIP);
    expect(chunk.audioTokens).toBe(audioTokenCount(melFrameCount(samples.length)));
    expect(chunk.classes.length).toBe(2 * units.length);
    for (const c of chunk.classes) expect(Number.isInteger(c) && c >= 0 && c < 5000).toBe(true);
    // The classes vary and some are out of order, so the repair has work to do here.
    expect(new Set(chunk.classes).size).toBeGreaterThan(1);
    expect(chunk.repaired).toBeGreaterThan(0);
    const fixed = repairTimestamps(chunk.classes.map((c) => c * 80));
    report.words.forEach((w, i) => {
      expect(w.start_time).toBe(Math.round(fixed[2 * i]) / 1000);
      expect(w.end_time).toBe(Math.round(fixed[2 * i + 1]) / 1000);
    });
    for (let i = 1; i < fixed.length; i += 1) expect(fixed[i]).toBeGreaterThanOrEqual(fixed[i - 1]);
    expect(chunk.repaired).toBe(chunk.classes.filter((c, i) => c * 80 !== fixed[i]).length);
    expect(report.timings.decoderMs).toBeGreaterThan(0);

    // The same words from --srt, --vtt and the table, parsed back.
    const srt = (await align(['--model-dir', alignerDir, '--language', 'English', '--text', clipText, '--srt', CLIP])).trimEnd().split('\n\n');
    const vtt = (await align(['--model-dir', alignerDir, '--language', 'English', '--text', clipText, '--vtt', CLIP])).trimEnd().split('\n\n');
    expect(vtt.shift()).toBe('WEBVTT');
    const table = (await align(['--model-dir', alignerDir, '--language', 'English', '--text', clipText, CLIP])).trimEnd().split('\n');
    expect(srt.length).toBe(units.length);
    report.words.forEach((w, i) => {
      const [num, srtTimes, srtText] = srt[i].split('\n');
      expect(num).toBe(String(i + 1));
      expect(srtTimes.split(' --> ').map(clock)).toEqual([w.start_time, w.end_time]);
      expect(srtText).toBe(w.text);
      const [vttTimes, vttText] = vtt[i].split('\n');
      expect(vttTimes.split(' --> ').map(clock)).toEqual([w.start_time, w.end_time]);
      expect(vttText).toBe(w.text);
      expect(table[i].split('\t')).toEqual([w.start_time.toFixed(3), w.end_time.toFixed(3), w.text]);
    });
  });

  it('Chinese text: one unit per ideograph reaches the graph', async () => {
    const report = JSON.parse(await align(['--model-dir', alignerDir, '--language', 'Chinese', '--text', '我们 today 去北京!', '--threads', '1', '--json', JFK])) as AlignReport;
    expect(report.words.map((w) => w.text)).toEqual(['我', '们', 'today', '去', '北', '京']);
    expect(report.chunks[0].classes.length).toBe(12);
  });

  it('an incomplete aligner directory and a missing variant are named in one line', async () => {
    const broken = join(scratch, 'broken');
    await cp(alignerDir, broken, { recursive: true });
    await rm(join(broken, 'aligner_decoder.onnx'));
    await expect(align(['--model-dir', broken, '--language', 'English', '--text', 'ask not', JFK])).rejects.toThrow(/aligner_decoder\.onnx is missing/);
    await expect(align(['--model-dir', alignerDir, '--language', 'English', '--text', 'ask not', '--variant', 'int8', JFK]))
      .rejects.toThrow(/variant int8 has no aligner_decoder\.int8\.onnx/);
  });
});

describe('qwen3-onnx align --variant int4 on the quantised tiny aligner', () => {
  it('loads encoder.int4.onnx and aligner_decoder.int4.onnx and times every unit', async () => {
    const dir = join(scratch, 'int4');
    await cp(alignerDir, dir, { recursive: true });
    await runCommand(registerQuantize, 'quantize', ['--model-dir', dir]);
    const report = JSON.parse(await align(['--model-dir', dir, '--variant', 'int4', '--language', 'English', '--text', clipText, '--threads', '1', '--json', CLIP])) as AlignReport;
    expect(report.variant).toBe('int4');
    expect(report.words.map((w) => w.text)).toEqual(splitWords(clipText, 'English'));
    const fixed = repairTimestamps(report.chunks[0].classes.map((c) => c * 80));
    expect(report.words.map((w) => [w.start_time, w.end_time])).toEqual(report.words.map((_, i) => [fixed[2 * i] / 1000, fixed[2 * i + 1] / 1000]));
  }, 300_000);
});

describe('qwen3-onnx transcribe --timestamps on the tiny ASR model and the tiny aligner', () => {
  it('aligns each segment with its own text and shifts it by the segment offset', async () => {
    const asrDir = await tinyModelDir();
    const report = JSON.parse(await transcribe([
      '--model-dir', asrDir, '--timestamps', '--aligner', alignerDir, '--language', 'English',
      '--max-new-tokens', '4', '--max-segment-seconds', '2', '--threads', '1', '--json', CLIP,
    ])) as TranscribeReport & { files: Array<TranscribeReport['files'][number] & FileTimestamps> };
    const f = report.files[0];
    expect(f.segments.length).toBeGreaterThanOrEqual(2);
    const perSegment = f.segments.map((s) => (s.text.trim() === '' ? [] : splitWords(s.text, s.language)));
    expect(f.words.map((w) => w.text)).toEqual(perSegment.flat());
    expect(f.words.length).toBeGreaterThan(0);
    const aligned = f.segments.filter((_, i) => perSegment[i].length > 0);
    expect(f.alignment.chunks.map((c) => c.offsetS)).toEqual(aligned.map((s) => s.offsetS));
    let at = 0;
    f.alignment.chunks.forEach((c) => {
      const words = f.words.slice(at, at + c.words);
      at += c.words;
      const fixed = repairTimestamps(c.classes.map((k) => k * 80));
      words.forEach((w, i) => {
        expect(w.start_time).toBeCloseTo(fixed[2 * i] / 1000 + c.offsetS, 3);
        expect(w.end_time).toBeCloseTo(fixed[2 * i + 1] / 1000 + c.offsetS, 3);
      });
    });
    expect(at).toBe(f.words.length);
  }, 300_000);
});
