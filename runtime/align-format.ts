import type { TimedWord } from './aligner.js';

/**
 * Printing aligned words: a plain table (start, end, word; tab-separated, seconds with 3 decimals),
 * SubRip (.srt) and WebVTT (.vtt) with one cue per word.
 */

export type WordFormat = 'text' | 'srt' | 'vtt';

/** Whole milliseconds of a time in seconds (the aligner's times have 3 decimals). */
const toMs = (seconds: number): number => Math.max(0, Math.round(seconds * 1000));

/** HH:MM:SS<sep>mmm, hours unbounded. */
export function clockTime(seconds: number, separator: ',' | '.'): string {
  const ms = toMs(seconds);
  const pad = (n: number, width: number): string => String(n).padStart(width, '0');
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${separator}${pad(ms % 1000, 3)}`;
}

export function formatWordTable(words: readonly TimedWord[]): string {
  return words.map((w) => `${w.start_time.toFixed(3)}\t${w.end_time.toFixed(3)}\t${w.text}`).join('\n');
}

export function formatSrt(words: readonly TimedWord[]): string {
  return words.map((w, i) => `${i + 1}\n${clockTime(w.start_time, ',')} --> ${clockTime(w.end_time, ',')}\n${w.text}\n`).join('\n');
}

export function formatVtt(words: readonly TimedWord[]): string {
  const cues = words.map((w) => `${clockTime(w.start_time, '.')} --> ${clockTime(w.end_time, '.')}\n${w.text}\n`);
  return ['WEBVTT\n', ...cues].join('\n');
}

export function formatWords(words: readonly TimedWord[], format: WordFormat): string {
  if (format === 'srt') return formatSrt(words);
  if (format === 'vtt') return formatVtt(words);
  return formatWordTable(words);
}
