import { describe, expect, it } from 'vitest';
import {
  joinSegmentTexts, maxSegmentSamples, mergeLanguages, quietestPoint, segmentBounds, segmentSamples,
  SEARCH_SECONDS,
} from './segment.js';

const RATE = 16000;

/** Loud noise (|x| in [0.3, 0.9]) with quiet holes [start, end) of amplitude `floor` (seconds). */
function noiseWithHoles(seconds: number, holes: [number, number, number][]): Float32Array {
  let s = 12345;
  const x = Float32Array.from({ length: Math.round(seconds * RATE) }, () => {
    s = (s * 16807) % 2147483647;
    const u = s / 2147483647;
    return (u < 0.5 ? -1 : 1) * (0.3 + 0.6 * Math.abs(2 * u - 1));
  });
  for (const [a, b, floor] of holes) for (let i = Math.round(a * RATE); i < Math.round(b * RATE); i += 1) x[i] *= floor;
  return x;
}

function expectTiling(bounds: { start: number; end: number }[], total: number): void {
  expect(bounds[0].start).toBe(0);
  expect(bounds.at(-1)?.end).toBe(total);
  for (let i = 1; i < bounds.length; i += 1) expect(bounds[i].start).toBe(bounds[i - 1].end);
  for (const b of bounds) expect(b.end).toBeGreaterThan(b.start);
}

describe('segmentBounds', () => {
  it('leaves audio no longer than the segment length whole', () => {
    const x = new Float32Array(60 * RATE);
    expect(segmentBounds(x, RATE, 60)).toEqual([{ start: 0, end: 60 * RATE }]);
  });

  it('cuts inside the quiet gap nearest each nominal cut (within +-5 s)', () => {
    // 100 s of noise; quiet gaps at 33 s, 62 s and 95 s, and a quieter decoy at 57 s that no
    // search window reaches (windows: [25, 35], then [cut0 + 25, cut0 + 35] = ~[58, 68], ...).
    const x = noiseWithHoles(100, [[33, 33.3, 0.01], [57, 57.2, 0.001], [62, 62.2, 0.01], [95, 95.3, 0.01]]);
    const bounds = segmentBounds(x, RATE, 30);
    expectTiling(bounds, x.length);
    const cuts = bounds.slice(0, -1).map((b) => b.end / RATE);
    expect(cuts.length).toBe(3);
    expect(cuts[0]).toBeGreaterThanOrEqual(33);
    expect(cuts[0]).toBeLessThan(33.3);
    expect(cuts[1]).toBeGreaterThanOrEqual(62);
    expect(cuts[1]).toBeLessThan(62.2);
    expect(cuts[2]).toBeGreaterThanOrEqual(95);
    expect(cuts[2]).toBeLessThan(95.3);
  });

  it('never returns a segment longer than the nominal length plus the search window', () => {
    const x = noiseWithHoles(200, [[61, 61.1, 0]]);
    for (const [max, seconds] of [[1, 30], [7.5, 60], [30, 200], [60, 200]]) {
      const audio = x.subarray(0, seconds * RATE);
      const bounds = segmentBounds(audio, RATE, max);
      expectTiling(bounds, audio.length);
      const longest = Math.max(...bounds.map((b) => b.end - b.start));
      expect(longest).toBeLessThanOrEqual(maxSegmentSamples(max, RATE));
      expect(bounds.length).toBeGreaterThanOrEqual(Math.ceil(seconds / (max + SEARCH_SECONDS)));
    }
  });

  it('segments ten minutes of silence into bounded pieces (first quiet window = left edge)', () => {
    const x = new Float32Array(600 * RATE);
    const bounds = segmentBounds(x, RATE, 60);
    expectTiling(bounds, x.length);
    // All windows tie at 0: the first one wins, so every cut lands 5 s before the nominal point.
    expect(bounds.slice(0, -1).every((b) => b.end - b.start === 55 * RATE)).toBe(true);
    expect(bounds.length).toBe(11);
  });

  it('refuses a non-positive length', () => {
    expect(() => segmentBounds(new Float32Array(10), RATE, 0)).toThrow(RangeError);
  });
});

describe('quietestPoint', () => {
  it('finds the quietest sample of the quietest window', () => {
    const x = Float32Array.from({ length: 1000 }, () => 1);
    for (let i = 600; i < 700; i += 1) x[i] = 0.1;
    x[650] = 0.01;
    x[420] = 0; // a single silent sample inside a loud window loses to the quiet window
    expect(quietestPoint(x, 0, 1000, 100)).toBe(650);
    // Restricted to a range without the quiet stretch, the lone zero wins.
    expect(quietestPoint(x, 300, 560, 100)).toBe(420);
  });

  it('takes the first of equal windows and the first of equal samples', () => {
    const x = new Float32Array(500).fill(0.5);
    expect(quietestPoint(x, 100, 500, 50)).toBe(100);
  });
});

describe('segmentSamples', () => {
  it('is a view, zero-padded to 0.5 s only when asked and shorter', () => {
    const x = Float32Array.from({ length: 20000 }, (_, i) => i);
    const view = segmentSamples(x, { start: 100, end: 200 }, RATE, false);
    expect(view.length).toBe(100);
    expect(view.buffer).toBe(x.buffer);
    const padded = segmentSamples(x, { start: 100, end: 200 }, RATE, true);
    expect(padded.length).toBe(8000);
    expect(padded[0]).toBe(100);
    expect(padded[99]).toBe(199);
    expect(padded[100]).toBe(0);
    expect(segmentSamples(x, { start: 0, end: 9000 }, RATE, true).length).toBe(9000);
  });
});

describe('joining segments', () => {
  it('puts a space between words of space-separated scripts, nothing inside CJK', () => {
    expect(joinSegmentTexts(['Hello world.', 'Next part', '', 'end'])).toBe('Hello world. Next part end');
    expect(joinSegmentTexts(['你好', '世界'])).toBe('你好世界');
    expect(joinSegmentTexts(['日本語です。', 'Yes'])).toBe('日本語です。Yes');
    expect(joinSegmentTexts(['trailing ', 'space'])).toBe('trailing space');
    expect(joinSegmentTexts([])).toBe('');
  });

  it('merges languages like the official merge_languages', () => {
    expect(mergeLanguages(['Chinese', 'English', 'English', '', 'Chinese'])).toBe('Chinese,English,Chinese');
    expect(mergeLanguages(['', ' '])).toBe('');
  });
});
