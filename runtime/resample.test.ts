import { describe, expect, it } from 'vitest';
import { besselI0, resample, StreamingResampler } from './resample.js';

function tone(n: number, rate: number, hz: number, amp = 0.5): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / rate));
}

/** Amplitude of the `hz` component of x (rate `rate`) over [from, to), by quadrature correlation. */
function amplitudeAt(x: Float32Array, rate: number, hz: number, from: number, to: number): number {
  let s = 0;
  let c = 0;
  for (let i = from; i < to; i += 1) {
    s += x[i] * Math.sin((2 * Math.PI * hz * i) / rate);
    c += x[i] * Math.cos((2 * Math.PI * hz * i) / rate);
  }
  return (2 * Math.hypot(s, c)) / (to - from);
}

function maxErrorAgainstTone(y: Float32Array, rate: number, hz: number, amp: number, margin: number): number {
  let err = 0;
  for (let i = margin; i < y.length - margin; i += 1) {
    err = Math.max(err, Math.abs(y[i] - amp * Math.sin((2 * Math.PI * hz * i) / rate)));
  }
  return err;
}

describe('resample', () => {
  it('returns a copy when the rates match', () => {
    const x = tone(100, 16000, 440);
    const y = resample(x, 16000, 16000);
    expect(y).not.toBe(x);
    expect(Array.from(y)).toEqual(Array.from(x));
  });

  it('produces ceil(n * to / from) samples', () => {
    expect(resample(new Float32Array(1000), 44100, 16000).length).toBe(Math.ceil((1000 * 160) / 441));
    expect(resample(new Float32Array(7), 8000, 16000).length).toBe(14);
    expect(resample(new Float32Array(0), 48000, 16000).length).toBe(0);
  });

  for (const rate of [8000, 11025, 22050, 44100, 48000, 16001, 96001]) {
    it(`keeps an in-band tone from ${rate} Hz (to within -70 dB)`, () => {
      const seconds = rate > 50000 ? 0.25 : 0.5;
      const x = tone(Math.round(rate * seconds), rate, 1000);
      const y = resample(x, rate, 16000);
      expect(maxErrorAgainstTone(y, 16000, 1000, 0.5, 400)).toBeLessThan(0.5 * 10 ** (-70 / 20));
    });
  }

  it('keeps a constant exactly constant away from the edges', () => {
    const y = resample(new Float32Array(4410).fill(0.25), 44100, 16000);
    for (let i = 200; i < y.length - 200; i += 1) expect(Math.abs(y[i] - 0.25)).toBeLessThan(1e-6);
  });

  it('removes content above the new Nyquist instead of aliasing it (44.1 kHz, 12 kHz tone)', () => {
    // Without a low-pass, 12 kHz would alias to 4 kHz at 16 kHz.
    const y = resample(tone(44100, 44100, 12000), 44100, 16000);
    expect(amplitudeAt(y, 16000, 4000, 400, y.length - 400)).toBeLessThan(1e-4);
    let rms = 0;
    for (let i = 400; i < y.length - 400; i += 1) rms += y[i] * y[i];
    expect(Math.sqrt(rms / (y.length - 800))).toBeLessThan(1e-4);
  });

  it('does not create images when upsampling (8 kHz, 1 kHz tone: nothing at 7 kHz)', () => {
    const y = resample(tone(8000, 8000, 1000), 8000, 16000);
    expect(amplitudeAt(y, 16000, 1000, 400, y.length - 400)).toBeCloseTo(0.5, 4);
    expect(amplitudeAt(y, 16000, 7000, 400, y.length - 400)).toBeLessThan(1e-4);
  });

  it('rejects non-integer rates', () => {
    expect(() => resample(new Float32Array(4), 44100.5, 16000)).toThrow(RangeError);
  });

  it('besselI0 matches known values', () => {
    expect(besselI0(0)).toBe(1);
    expect(besselI0(1)).toBeCloseTo(1.2660658777520082, 14);
    expect(besselI0(9)).toBeCloseTo(1093.5883545113745, 9);
  });
});

describe('StreamingResampler', () => {
  // Pseudo-random blocks of 1..5000 samples, so block edges fall everywhere relative to the taps.
  function blocksOf(x: Float32Array, seed: number): Float32Array[] {
    const out: Float32Array[] = [];
    let state = seed;
    for (let at = 0; at < x.length;) {
      state = (state * 1103515245 + 12345) % 2147483648;
      const n = 1 + (state % 5000);
      out.push(x.subarray(at, at + n));
      at += n;
    }
    return out;
  }
  const noise = (n: number): Float32Array => {
    let s = 7;
    return Float32Array.from({ length: n }, () => { s = (s * 16807) % 2147483647; return s / 2147483647 - 0.5; });
  };
  for (const [from, to] of [[44100, 16000], [8000, 16000], [48000, 16000], [22050, 16000], [16001, 16000], [384000, 16000], [16000, 16000]]) {
    it(`block by block equals resample() bit for bit (${from} -> ${to} Hz)`, () => {
      const x = noise(from === 384000 ? 100000 : 30011);
      const whole = resample(x, from, to);
      const r = new StreamingResampler(from, to);
      const parts = blocksOf(x, from).map((b) => r.push(b));
      parts.push(r.finish());
      const joined = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) { joined.set(p, at); at += p.length; }
      expect(joined.length).toBe(whole.length);
      expect(r.outputLength(x.length)).toBe(whole.length);
      let mismatches = 0;
      for (let i = 0; i < whole.length; i += 1) if (joined[i] !== whole[i]) mismatches += 1;
      expect(mismatches).toBe(0);
    });
  }

  it('holds only about one filter length of input between pushes', () => {
    const r = new StreamingResampler(44100, 16000);
    const x = noise(44100);
    for (let at = 0; at < x.length; at += 4410) r.push(x.subarray(at, at + 4410));
    // The kernel spans 2 * ceil(32 / (2 * cutoff)) taps: a few hundred input samples, not the second pushed.
    const pending = (r as unknown as { pending: Float32Array }).pending.length;
    expect(pending).toBeGreaterThan(0);
    expect(pending).toBeLessThan(400);
  });
});
