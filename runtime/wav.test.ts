import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { loadAudio } from './audio.js';
import { decodeWav, readWav } from './wav.js';
import { encodeWav, riff, type WavSpec } from './wav-writer.js';

const JFK = fileURLToPath(new URL('../../shared/audio/jfk.wav', import.meta.url));

function ramp(n: number, scale = 0.9): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => scale * Math.sin(i * 0.37) * (i % 7 === 0 ? -1 : 1));
}

function u16(v: number): number[] { return [v & 0xff, v >> 8]; }
function u32(v: number): number[] { return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff]; }
function fmtBody(code: number, channels: number, rate: number, bits: number): Uint8Array {
  const block = channels * (bits / 8);
  return Uint8Array.from([...u16(code), ...u16(channels), ...u32(rate), ...u32(rate * block), ...u16(block), ...u16(bits)]);
}

describe('decodeWav', () => {
  const encodings: [WavSpec['encoding'], number][] = [
    ['pcm8', 1 / 128], ['pcm16', 1 / 32768], ['pcm24', 1 / 8388608], ['pcm32', 1e-9], ['float32', 1e-7], ['float64', 0],
  ];
  for (const [encoding, tol] of encodings) {
    for (const extensible of [false, true]) {
      it(`reads ${encoding}${extensible ? ' (WAVE_FORMAT_EXTENSIBLE)' : ''}`, () => {
        const x = ramp(333);
        const wav = decodeWav(encodeWav({ sampleRate: 22050, channels: [x], encoding, extensible }), 'x.wav');
        expect(wav.sampleRate).toBe(22050);
        expect(wav.channels).toBe(1);
        expect(wav.samples.length).toBe(333);
        for (let i = 0; i < x.length; i += 1) expect(Math.abs(wav.samples[i] - x[i])).toBeLessThanOrEqual(tol + 1e-7);
      });
    }
  }

  it('averages channels into mono', () => {
    const left = ramp(100, 0.5);
    const right = Float64Array.from(left, (v, i) => (i % 3) * 0.1 - v);
    const wav = decodeWav(encodeWav({ sampleRate: 8000, channels: [left, right], encoding: 'float32' }), 's.wav');
    expect(wav.channels).toBe(2);
    for (let i = 0; i < 100; i += 1) expect(wav.samples[i]).toBeCloseTo((left[i] + right[i]) / 2, 6);
  });

  it('skips LIST and other chunks, honouring pad bytes after odd sizes', () => {
    const x = ramp(50);
    const bytes = encodeWav({
      sampleRate: 16000, channels: [x], encoding: 'pcm16',
      extraChunks: [{ id: 'LIST', body: new TextEncoder().encode('INFOISFT odd') }, { id: 'fact', body: Uint8Array.of(1, 2, 3) }],
    });
    const wav = decodeWav(bytes, 'l.wav');
    expect(wav.samples.length).toBe(50);
    expect(wav.samples[10]).toBeCloseTo(x[10], 4);
    // An odd chunk before fmt, too.
    const odd = riff([
      { id: 'JUNK', body: Uint8Array.of(9) },
      { id: 'fmt ', body: fmtBody(1, 1, 16000, 16) },
      { id: 'data', body: Uint8Array.of(0, 64, 0, 192) },
    ]);
    expect(Array.from(decodeWav(odd, 'o.wav').samples)).toEqual([0.5, -0.5]);
  });

  it('drops a trailing partial frame', () => {
    const bytes = riff([{ id: 'fmt ', body: fmtBody(1, 2, 16000, 16) }, { id: 'data', body: Uint8Array.of(0, 64, 0, 64, 0, 64) }]);
    expect(Array.from(decodeWav(bytes, 'p.wav').samples)).toEqual([0.5]);
  });

  const bad: [string, Uint8Array, RegExp][] = [
    ['an empty file', new Uint8Array(0), /bad\.wav: not a WAV file/],
    ['an MP3', Uint8Array.from([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), /bad\.wav: not a WAV file/],
    ['a truncated data chunk', riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 16) }, { id: 'data', body: new Uint8Array(8), declaredSize: 1000 }]), /bad\.wav: truncated: data chunk declares 1000 bytes but only 8 remain/],
    ['a truncated fmt chunk', riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 16), declaredSize: 400 }]), /bad\.wav: truncated/],
    ['an unsupported format (A-law)', riff([{ id: 'fmt ', body: fmtBody(6, 1, 8000, 8) }, { id: 'data', body: new Uint8Array(4) }]), /bad\.wav: unsupported WAV format code 0x0006/],
    ['an unsupported bit depth', riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 12) }, { id: 'data', body: new Uint8Array(4) }]), /bad\.wav: unsupported bit depth 12 for PCM/],
    ['float16', riff([{ id: 'fmt ', body: fmtBody(3, 1, 16000, 16) }, { id: 'data', body: new Uint8Array(4) }]), /bad\.wav: unsupported bit depth 16 for float/],
    ['zero channels', riff([{ id: 'fmt ', body: fmtBody(1, 0, 16000, 16) }, { id: 'data', body: new Uint8Array(4) }]), /bad\.wav: zero channels/],
    ['no data chunk', riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 16) }, { id: 'LIST', body: new Uint8Array(6) }]), /bad\.wav: no data chunk/],
    ['no fmt chunk', riff([{ id: 'LIST', body: new Uint8Array(6) }]), /bad\.wav: no fmt chunk/],
    ['data before fmt', riff([{ id: 'data', body: new Uint8Array(4) }, { id: 'fmt ', body: fmtBody(1, 1, 16000, 16) }]), /bad\.wav: data chunk comes before the fmt chunk/],
    ['a short fmt chunk', riff([{ id: 'fmt ', body: new Uint8Array(10) }, { id: 'data', body: new Uint8Array(4) }]), /bad\.wav: fmt chunk too short/],
  ];
  for (const [what, bytes, message] of bad) {
    it(`rejects ${what} with a one-line UserError naming the file`, () => {
      let caught: unknown;
      try { decodeWav(bytes, 'bad.wav'); } catch (err) { caught = err; }
      expect(caught).toBeInstanceOf(UserError);
      expect((caught as Error).message).toMatch(message);
      expect((caught as Error).message).not.toContain('\n');
    });
  }
});

describe('readWav / loadAudio on files', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'qwen3-wav-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  it('reads the shared jfk.wav (16 kHz mono PCM16, about 11 s)', async () => {
    const wav = await readWav(JFK);
    expect(wav.sampleRate).toBe(16000);
    expect(wav.channels).toBe(1);
    expect(wav.samples.length / 16000).toBeGreaterThan(10);
    expect(wav.samples.length / 16000).toBeLessThan(12);
  });

  it('names a missing file', async () => {
    await expect(readWav(join(dir, 'nope.wav'))).rejects.toThrow(/cannot read audio .*nope\.wav: no such file/);
  });

  it('resamples a 44.1 kHz stereo file to 16 kHz mono', async () => {
    const n = 44100;
    const tone = Float64Array.from({ length: n }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * i) / 44100));
    const file = join(dir, 'stereo.wav');
    await writeFile(file, encodeWav({ sampleRate: 44100, channels: [tone, tone], encoding: 'pcm24' }));
    const audio = await loadAudio(file);
    expect(audio.sourceRate).toBe(44100);
    expect(audio.sourceChannels).toBe(2);
    expect(audio.samples.length).toBe(16000);
    for (let i = 1000; i < 15000; i += 97) {
      expect(audio.samples[i]).toBeCloseTo(0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000), 3);
    }
  });

  it('normalises float audio whose peak exceeds 1 (like the official loader)', async () => {
    const x = Float64Array.from({ length: 4000 }, (_, i) => 4 * Math.sin(i / 10));
    const file = join(dir, 'loud.wav');
    await writeFile(file, encodeWav({ sampleRate: 16000, channels: [x], encoding: 'float32' }));
    const audio = await loadAudio(file);
    const peak = audio.samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(peak).toBeCloseTo(1, 6);
    expect(audio.samples[5]).toBeCloseTo(x[5] / 4, 5);
  });

  it('rejects audio too short for the mel front end and non-finite samples', async () => {
    const short = join(dir, 'short.wav');
    await writeFile(short, encodeWav({ sampleRate: 16000, channels: [new Float64Array(100)], encoding: 'pcm16' }));
    await expect(loadAudio(short)).rejects.toThrow(/short\.wav: audio too short \(100 samples/);
    const nan = join(dir, 'nan.wav');
    await writeFile(nan, encodeWav({ sampleRate: 16000, channels: [Float64Array.of(0, NaN, ...new Float64Array(400))], encoding: 'float32' }));
    await expect(loadAudio(nan)).rejects.toThrow(/nan\.wav: contains NaN/);
  });
});
