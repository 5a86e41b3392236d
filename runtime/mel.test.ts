import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Prng } from '../common/prng.js';
import { Fft } from './fft.js';
import { logMelSpectrogram, melFrameCount } from './mel.js';
import { readWav } from './wav.js';

const JFK = fileURLToPath(new URL('../../shared/audio/jfk.wav', import.meta.url));

// ---- An independent, slow float64 implementation written from the formulas ----------------

/** Slaney mel: 3 mel per 200 Hz up to 1 kHz (mel 15), then 27 mel per factor 6.4. */
function slaneyMel(hz: number): number {
  return hz < 1000 ? (3 * hz) / 200 : 15 + (27 * Math.log(hz / 1000)) / Math.log(6.4);
}
function slaneyHz(mel: number): number {
  return mel < 15 ? (200 * mel) / 3 : 1000 * 6.4 ** ((mel - 15) / 27);
}
/** Filter centres and edges: 130 points equally spaced in mel between 0 and 8 kHz. */
function melPointsHz(): number[] {
  const top = slaneyMel(8000);
  return Array.from({ length: 130 }, (_, i) => slaneyHz((top * i) / 129));
}
/** weight[m][k] for FFT bin k at 40 Hz * k: a triangle over (p[m], p[m+2]) peaking at p[m+1], area-normalised. */
function referenceFilters(): number[][] {
  const p = melPointsHz();
  return Array.from({ length: 128 }, (_, m) => Array.from({ length: 201 }, (_, k) => {
    const f = 40 * k;
    let w = 0;
    if (f > p[m] && f <= p[m + 1]) w = (f - p[m]) / (p[m + 1] - p[m]);
    else if (f > p[m + 1] && f < p[m + 2]) w = (p[m + 2] - f) / (p[m + 2] - p[m + 1]);
    return (w * 2) / (p[m + 2] - p[m]);
  }));
}
/** Whisper log-mel by a direct O(N^2) DFT per frame, reflect padding by explicit mirroring. */
function referenceLogMel(x: Float64Array | Float32Array): number[][] {
  const n = x.length;
  const padded = [...Array.from({ length: 200 }, (_, i) => x[200 - i]), ...x, ...Array.from({ length: 200 }, (_, i) => x[n - 2 - i])];
  const frames = Math.floor(n / 160);
  const filters = referenceFilters();
  const out = Array.from({ length: 128 }, () => new Array<number>(frames).fill(0));
  for (let t = 0; t < frames; t += 1) {
    const power = new Array<number>(201).fill(0);
    for (let k = 0; k <= 200; k += 1) {
      let re = 0;
      let im = 0;
      for (let j = 0; j < 400; j += 1) {
        const v = padded[t * 160 + j] * (0.5 - 0.5 * Math.cos((2 * Math.PI * j) / 400));
        re += v * Math.cos((2 * Math.PI * k * j) / 400);
        im -= v * Math.sin((2 * Math.PI * k * j) / 400);
      }
      power[k] = re * re + im * im;
    }
    for (let m = 0; m < 128; m += 1) {
      const e = filters[m].reduce((s, w, k) => s + w * power[k], 0);
      out[m][t] = Math.log10(Math.max(e, 1e-10));
    }
  }
  const max = Math.max(...out.map((row) => Math.max(...row)));
  return out.map((row) => row.map((v) => (Math.max(v, max - 8) + 4) / 4));
}

function noise(n: number, seed: number, amp = 0.3): Float32Array {
  const rng = new Prng(seed);
  return Float32Array.from({ length: n }, () => amp * rng.normal());
}

// ---- Tests ----------------------------------------------------------------------------------

describe('Fft', () => {
  for (const size of [1, 2, 3, 8, 12, 25, 49, 400]) {
    it(`matches a direct DFT for size ${size}`, () => {
      const rng = new Prng(size);
      const re = Float64Array.from({ length: size }, () => rng.normal());
      const im = Float64Array.from({ length: size }, () => rng.normal());
      const outRe = new Float64Array(size);
      const outIm = new Float64Array(size);
      new Fft(size).transform(re, im, outRe, outIm);
      for (let k = 0; k < size; k += 1) {
        let sr = 0;
        let si = 0;
        for (let j = 0; j < size; j += 1) {
          const a = (-2 * Math.PI * k * j) / size;
          sr += re[j] * Math.cos(a) - im[j] * Math.sin(a);
          si += re[j] * Math.sin(a) + im[j] * Math.cos(a);
        }
        expect(outRe[k]).toBeCloseTo(sr, 9);
        expect(outIm[k]).toBeCloseTo(si, 9);
      }
    });
  }
});

describe('logMelSpectrogram', () => {
  for (const n of [4000, 4321, 201]) {
    it(`equals an independent direct-DFT float64 computation (${n} samples)`, () => {
      const rng = new Prng(n);
      const x = Float32Array.from({ length: n }, (_, i) =>
        0.4 * Math.sin(i * 0.11) + 0.2 * Math.sin(i * 0.9 + 1) + 0.05 * rng.normal());
      const mel = logMelSpectrogram(x);
      const ref = referenceLogMel(x);
      expect(mel.nMels).toBe(128);
      expect(mel.frames).toBe(Math.floor(n / 160));
      expect(mel.data.length).toBe(128 * mel.frames);
      let worst = 0;
      for (let m = 0; m < 128; m += 1) {
        for (let t = 0; t < mel.frames; t += 1) worst = Math.max(worst, Math.abs(mel.data[m * mel.frames + t] - ref[m][t]));
      }
      expect(worst).toBeLessThan(1e-5);
    });
  }

  it('puts a pure tone in the band predicted analytically from the filter triangles', () => {
    // A tone at FFT bin j (40 Hz * j) through a periodic Hann window has power P at bin j,
    // P/4 at bins j +- 1 and nothing elsewhere, so band m collects P * (w_m(f) + (w_m(f-40) + w_m(f+40)) / 4).
    const p = melPointsHz();
    const w = (m: number, f: number): number =>
      Math.max(0, Math.min((f - p[m]) / (p[m + 1] - p[m]), (p[m + 2] - f) / (p[m + 2] - p[m + 1]))) * 2 / (p[m + 2] - p[m]);
    const centresMel = p.slice(1, 129).map(slaneyMel);
    for (const hz of [280, 1000, 1720, 2520, 4000, 6120, 7400]) {
      const x = Float32Array.from({ length: 8000 }, (_, i) => 0.5 * Math.sin((2 * Math.PI * hz * i) / 16000));
      const mel = logMelSpectrogram(x);
      const energy = (m: number): number => w(m, hz) + (w(m, hz - 40) + w(m, hz + 40)) / 4;
      const expected = Array.from({ length: 128 }, (_, m) => m).reduce((best, m) => (energy(m) > energy(best) ? m : best), 0);
      if (hz >= 2000) {
        // Where bands are wider than the window's main lobe this is the band centred nearest the tone.
        const target = slaneyMel(hz);
        const nearest = centresMel.reduce((best, c, m) => (Math.abs(c - target) < Math.abs(centresMel[best] - target) ? m : best), 0);
        expect(expected).toBe(nearest);
      }
      for (const t of [10, 25, 40]) {
        let arg = 0;
        for (let m = 1; m < 128; m += 1) if (mel.data[m * mel.frames + t] > mel.data[arg * mel.frames + t]) arg = m;
        expect(arg, `${hz} Hz, frame ${t}`).toBe(expected);
      }
    }
  });

  it('maps silence to the floor value (log10(1e-10) + 4) / 4 = -1.5', () => {
    const mel = logMelSpectrogram(new Float32Array(1600));
    expect(mel.frames).toBe(10);
    expect(new Set(mel.data)).toEqual(new Set([-1.5]));
  });

  it('shifts every band by log10(4)/4 when the amplitude doubles, and clamps the range to 2', () => {
    const x = noise(3200, 7, 0.1);
    const a = logMelSpectrogram(x);
    const b = logMelSpectrogram(x.map((v) => 2 * v));
    for (let i = 0; i < a.data.length; i += 1) expect(b.data[i] - a.data[i]).toBeCloseTo(Math.log10(4) / 4, 5);
    const quiet = Float32Array.from({ length: 3200 }, (_, i) => (i < 1600 ? 0.5 * Math.sin(i) : 0));
    const q = logMelSpectrogram(quiet);
    let max = -Infinity;
    let min = Infinity;
    for (const v of q.data) { max = Math.max(max, v); min = Math.min(min, v); }
    expect(min).toBeCloseTo(max - 2, 6);
  });

  it('counts frames as floor(samples / 160) and rejects signals the reflect padding cannot take', () => {
    expect(melFrameCount(16000)).toBe(100);
    expect(melFrameCount(16159)).toBe(100);
    expect(() => logMelSpectrogram(new Float32Array(200))).toThrow(/too short/);
  });

  it('computes jfk.wav (11 s) with the expected shape and finite values', async () => {
    const wav = await readWav(JFK);
    const mel = logMelSpectrogram(wav.samples);
    expect(mel.frames).toBe(Math.floor(wav.samples.length / 160));
    let max = -Infinity;
    let nonFinite = 0;
    for (const v of mel.data) { if (!Number.isFinite(v)) nonFinite += 1; max = Math.max(max, v); }
    expect(nonFinite).toBe(0);
    // Speech at normal level peaks a little above 1 on the Whisper scale.
    expect(max).toBeGreaterThan(0.5);
    expect(max).toBeLessThan(2.5);
  });
});
