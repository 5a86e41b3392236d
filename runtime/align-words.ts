/**
 * The units the forced aligner times, cut from a transcript the way the official
 * Qwen3ForceAlignProcessor does (qwen_asr/inference/qwen3_forced_aligner.py, shared/ALIGNER.md
 * step 2). The lower-cased language name picks the splitter:
 *
 * - every language but Japanese and Korean: split on Python whitespace, keep only Unicode
 *   letters, numbers and the apostrophe of each piece ("50-minute" -> "50minute"), drop empty
 *   pieces, then make every CJK ideograph a unit of its own ("我们the" -> 我, 们, the);
 * - Japanese and Korean: the official code uses nagisa (morphemes) and soynlp's LTokenizer with
 *   a bundled dictionary; Node has neither, so the ICU word segmenter (Intl.Segmenter) stands in,
 *   and each segment is cleaned the same way. The units can differ from the official ones (README).
 */

/** Python str.isspace() characters: what `str.split()` without arguments splits on. */
const PY_WHITESPACE = /[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** Letters (L*), numbers (N*) and the ASCII apostrophe: the characters a unit keeps. */
const KEPT_CHAR = /^[\p{L}\p{N}']$/u;

/** The official is_cjk_char ranges (CJK Unified Ideographs, extensions A-E, compatibility). */
const CJK_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2b73f],
  [0x2b740, 0x2b81f], [0x2b820, 0x2ceaf], [0xf900, 0xfaff],
];

export function isCjkIdeograph(ch: string): boolean {
  const code = ch.codePointAt(0) ?? -1;
  return CJK_RANGES.some(([lo, hi]) => code >= lo && code <= hi);
}

/** The piece with everything but letters, numbers and apostrophes removed (code point by code point). */
export function cleanPiece(piece: string): string {
  let out = '';
  for (const ch of piece) if (KEPT_CHAR.test(ch)) out += ch;
  return out;
}

/** A cleaned piece cut so that each CJK ideograph stands alone and the runs between stay whole. */
function splitIdeographs(piece: string): string[] {
  const units: string[] = [];
  let run = '';
  for (const ch of piece) {
    if (isCjkIdeograph(ch)) {
      if (run) units.push(run);
      run = '';
      units.push(ch);
    } else {
      run += ch;
    }
  }
  if (run) units.push(run);
  return units;
}

/** The whitespace splitter (official tokenize_space_lang). */
export function splitSpaceLanguage(text: string): string[] {
  const units: string[] = [];
  for (const piece of text.split(PY_WHITESPACE)) {
    const cleaned = cleanPiece(piece);
    if (cleaned) units.push(...splitIdeographs(cleaned));
  }
  return units;
}

/** ICU word segments of `text` in `locale`, each cleaned; empty ones (spaces, punctuation) dropped. */
export function splitWithSegmenter(text: string, locale: 'ja' | 'ko'): string[] {
  const segmenter = new Intl.Segmenter(locale, { granularity: 'word' });
  const units: string[] = [];
  for (const { segment } of segmenter.segment(text)) {
    const cleaned = cleanPiece(segment);
    if (cleaned) units.push(cleaned);
  }
  return units;
}

/** The aligner's units for a transcript in `language` (any case: "English", "japanese"). */
export function splitWords(text: string, language: string): string[] {
  const lang = language.toLowerCase();
  if (lang === 'japanese') return splitWithSegmenter(text, 'ja');
  if (lang === 'korean') return splitWithSegmenter(text, 'ko');
  return splitSpaceLanguage(text);
}
