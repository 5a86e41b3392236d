import { describe, expect, it } from 'vitest';
import { capToChunks, placeTranscript, type ChunkTranscript } from './align-long.js';
import { splitWords } from './align-words.js';
import type { TimedWord } from './aligner.js';

const SR = 16000;
const chunk = (startS: number, endS: number, text: string): ChunkTranscript => ({
  start: startS * SR, end: endS * SR, text, units: splitWords(text, 'English'), asrMs: 0,
});

describe('placeTranscript', () => {
  it('gives every chunk its own units, in order, as aligner segments over the same samples', () => {
    const chunks = [chunk(0, 178.5, 'we choose to go to the moon'), chunk(178.5, 360, 'in this decade and do the other things'), chunk(360, 372, 'not because they are easy')];
    const units = splitWords('We choose to go to the Moon in this decade, and do the other things, not because they are easy!', 'English');
    const { segments, placement } = placeTranscript(units, chunks);
    expect(segments.map((s) => [s.start, s.end])).toEqual(chunks.map((c) => [c.start, c.end]));
    expect(segments.map((s) => s.words.join(' '))).toEqual(['We choose to go to the Moon', 'in this decade and do the other things', 'not because they are easy']);
    expect(segments.flatMap((s) => s.words)).toEqual(units);
    expect(placement.matchedShare).toBe(1);
  });

  it('a chunk no unit falls in is an empty segment (alignSegments skips it)', () => {
    const chunks = [chunk(0, 180, 'hello there'), chunk(180, 360, 'applause applause'), chunk(360, 400, 'goodbye now')];
    const { segments } = placeTranscript(['hello', 'there', 'goodbye', 'now'], chunks);
    expect(segments.map((s) => s.words)).toEqual([['hello', 'there'], [], ['goodbye', 'now']]);
  });
});

describe('capToChunks', () => {
  it('caps times past their chunk\'s end at that end and counts them', () => {
    const segments = [{ start: 0, end: 180.0116875 * SR, words: ['a', 'b'] }, { start: 180.0116875 * SR, end: 192 * SR, words: [] }, { start: 192 * SR, end: 200 * SR, words: ['c'] }];
    const words: TimedWord[] = [
      { text: 'a', start_time: 179.5, end_time: 200.4 },
      { text: 'b', start_time: 250, end_time: 260 },
      { text: 'c', start_time: 192.08, end_time: 199.92 },
    ];
    expect(capToChunks(words, segments)).toBe(3);
    expect(words.map((w) => [w.start_time, w.end_time])).toEqual([[179.5, 180.012], [180.012, 180.012], [192.08, 199.92]]);
  });

  it('refuses words that do not match the placed units', () => {
    expect(() => capToChunks([], [{ start: 0, end: SR, words: ['a'] }])).toThrow(/0 timed words for 1 placed units/);
  });
});
