import { describe, expect, it } from 'vitest';
import { clockTime, formatSrt, formatVtt, formatWordTable } from './align-format.js';
import type { TimedWord } from './aligner.js';

const WORDS: TimedWord[] = [
  { text: 'And', start_time: 0, end_time: 0.24 },
  { text: 'so', start_time: 0.24, end_time: 0.56 },
  { text: '我', start_time: 59.999, end_time: 61.04 },
  { text: "it's", start_time: 3725.008, end_time: 3725.008 },
];

/** Seconds of an SRT/VTT clock time, parsed independently of the writer. */
function parseClock(s: string, sep: ',' | '.'): number {
  const m = new RegExp(`^(\\d{2,}):([0-5]\\d):([0-5]\\d)\\${sep}(\\d{3})$`).exec(s);
  if (!m) throw new Error(`bad clock time ${s}`);
  return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

function parseCues(blocks: string[], sep: ',' | '.', numbered: boolean): TimedWord[] {
  return blocks.map((block, i) => {
    const lines = block.split('\n');
    if (numbered) expect(lines.shift()).toBe(String(i + 1));
    const [a, b] = (lines[0] ?? '').split(' --> ');
    return { text: lines.slice(1).join('\n'), start_time: parseClock(a, sep), end_time: parseClock(b, sep) };
  });
}

function expectSameWords(got: TimedWord[], want: TimedWord[]): void {
  expect(got.map((w) => w.text)).toEqual(want.map((w) => w.text));
  got.forEach((w, i) => {
    expect(w.start_time).toBeCloseTo(want[i].start_time, 6);
    expect(w.end_time).toBeCloseTo(want[i].end_time, 6);
  });
}

describe('word output formats', () => {
  it('clock times: hours past 99 minutes, milliseconds padded', () => {
    expect(clockTime(0, ',')).toBe('00:00:00,000');
    expect(clockTime(61.04, '.')).toBe('00:01:01.040');
    expect(clockTime(3725.008, ',')).toBe('01:02:05,008');
    expect(clockTime(360000.5, '.')).toBe('100:00:00.500');
  });

  it('SRT parses back to the same words and times', () => {
    const srt = formatSrt(WORDS);
    const blocks = srt.trimEnd().split('\n\n');
    expectSameWords(parseCues(blocks, ',', true), WORDS);
  });

  it('WebVTT starts with the header and parses back to the same words and times', () => {
    const vtt = formatVtt(WORDS);
    const [header, ...blocks] = vtt.trimEnd().split('\n\n');
    expect(header).toBe('WEBVTT');
    expectSameWords(parseCues(blocks, '.', false), WORDS);
  });

  it('the table is start, end, word per line with 3 decimals', () => {
    const rows = formatWordTable(WORDS).split('\n').map((l) => l.split('\t'));
    expect(rows[1]).toEqual(['0.240', '0.560', 'so']);
    expectSameWords(rows.map(([s, e, t]) => ({ text: t, start_time: Number(s), end_time: Number(e) })), WORDS);
  });
});
