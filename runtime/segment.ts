/**
 * Cutting long recordings into segments the decoder can take one at a time, as the official
 * qwen_asr package does (inference/utils.py split_audio_into_chunks): every `max` seconds,
 * look `SEARCH_SECONDS` either side of the nominal cut for the quietest 100 ms (sum of |x|),
 * and cut at its quietest sample. The segments tile the audio exactly (no gap, no overlap);
 * a tail segment shorter than 0.5 s is zero-padded to 0.5 s when it is decoded.
 *
 * Why it matters: decoder_init attends over the whole prompt, so its memory grows with the
 * square of the audio tokens (13 per second); per segment it is bounded, and the whole run
 * grows linearly with duration.
 */

/** Half-width of the window searched for a quiet cut (official search_expand_sec). */
export const SEARCH_SECONDS = 5;
/** Energy window (official min_window_ms). */
export const ENERGY_WINDOW_MS = 100;
/** Segments shorter than this are zero-padded (official MIN_ASR_INPUT_SECONDS). */
export const MIN_SEGMENT_SECONDS = 0.5;
/**
 * Default nominal segment length. The official package uses 1200 s (MAX_ASR_INPUT_SECONDS),
 * which makes one 20-minute prefill of ~15600 audio tokens; 60 s keeps a prefill under ~850
 * audio tokens and a segment's speech within the default 512 new tokens.
 */
export const DEFAULT_SEGMENT_SECONDS = 60;
/** Accepted range of --max-segment-seconds (the upper end is the official package's own). */
export const MIN_SEGMENT_SECONDS_FLAG = 1;
export const MAX_SEGMENT_SECONDS_FLAG = 1200;

/** Samples [start, end) of the input. */
export interface SegmentBounds { start: number; end: number }

/**
 * Longest segment `segmentBounds` can return for a nominal length (the cut may land up to
 * SEARCH_SECONDS after the nominal point), in samples.
 */
export function maxSegmentSamples(maxSeconds: number, sampleRate: number): number {
  return Math.floor(maxSeconds * sampleRate) + Math.floor(SEARCH_SECONDS * sampleRate);
}

/** Where to cut `samples` into segments of about `maxSeconds` (see the module comment). */
export function segmentBounds(samples: Float32Array, sampleRate: number, maxSeconds: number): SegmentBounds[] {
  if (!(maxSeconds > 0)) throw new RangeError(`segment length must be positive, got ${maxSeconds}`);
  const total = samples.length;
  const maxLen = Math.floor(maxSeconds * sampleRate);
  if (total <= maxLen) return [{ start: 0, end: total }];
  const expand = Math.floor(SEARCH_SECONDS * sampleRate);
  const win = Math.max(4, Math.floor((ENERGY_WINDOW_MS / 1000) * sampleRate));
  const out: SegmentBounds[] = [];
  let start = 0;
  while (total - start > maxLen) {
    const cut = start + maxLen;
    const left = Math.max(start, cut - expand);
    const right = Math.min(total, cut + expand);
    let boundary = right - left <= win ? cut : quietestPoint(samples, left, right, win);
    boundary = Math.min(total, Math.max(boundary, start + 1));
    out.push({ start, end: boundary });
    start = boundary;
  }
  out.push({ start, end: total });
  return out;
}

/**
 * The quietest sample inside the quietest `win`-sample window of samples[left, right): the
 * first window with the smallest sum of |x|, then its first sample with the smallest |x|.
 */
export function quietestPoint(samples: Float32Array, left: number, right: number, win: number): number {
  let sum = 0;
  for (let i = left; i < left + win; i += 1) sum += Math.abs(samples[i]);
  let best = sum;
  let bestStart = left;
  // A running sum, re-based every window length so rounding cannot drift across 10 s.
  for (let s = left + 1; s + win <= right; s += 1) {
    if ((s - left) % win === 0) {
      sum = 0;
      for (let i = s; i < s + win; i += 1) sum += Math.abs(samples[i]);
    } else {
      sum += Math.abs(samples[s + win - 1]) - Math.abs(samples[s - 1]);
    }
    if (sum < best) { best = sum; bestStart = s; }
  }
  let point = bestStart;
  for (let i = bestStart + 1; i < bestStart + win; i += 1) if (Math.abs(samples[i]) < Math.abs(samples[point])) point = i;
  return point;
}

/** The samples of one segment: a view, or a zero-padded copy when shorter than MIN_SEGMENT_SECONDS. */
export function segmentSamples(samples: Float32Array, seg: SegmentBounds, sampleRate: number, padShort: boolean): Float32Array {
  const view = samples.subarray(seg.start, seg.end);
  const minLen = Math.floor(MIN_SEGMENT_SECONDS * sampleRate);
  if (!padShort || view.length >= minLen) return view;
  const padded = new Float32Array(minLen);
  padded.set(view);
  return padded;
}

/**
 * Joins segment texts. The official package concatenates with "" (right for Chinese and
 * Japanese); between two letters of space-separated scripts that would glue the last word of
 * one segment to the first of the next, so a space goes there.
 */
export function joinSegmentTexts(texts: readonly string[]): string {
  let out = '';
  for (const t of texts) {
    if (!t) continue;
    const prev = out.at(-1);
    const next = t[0];
    if (prev !== undefined && !/\s/u.test(prev) && !/\s/u.test(next) && !NO_SPACE_SCRIPT.test(prev) && !NO_SPACE_SCRIPT.test(next)) out += ' ';
    out += t;
  }
  return out;
}

/** Scripts written without spaces between words (and their full-width punctuation). */
const NO_SPACE_SCRIPT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}\u3000-\u303f\uff00-\uffef]/u;

/** Merges per-segment languages like the official merge_languages: in order, consecutive repeats and blanks dropped, comma-joined. */
export function mergeLanguages(languages: readonly string[]): string {
  const out: string[] = [];
  for (const raw of languages) {
    const l = raw.trim();
    if (l && l !== out.at(-1)) out.push(l);
  }
  return out.join(',');
}
