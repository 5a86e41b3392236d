import { UserError } from '../common/errors.js';
import type { Tokenizer } from './tokenizer.js';

/**
 * The Qwen3-ASR chat prompt and the parsing of its answer, mirroring the official
 * qwen_asr/inference (qwen3_asr.py `_build_text_prompt`, utils.py `parse_asr_output`,
 * `detect_and_fix_repetitions`).
 */

/** qwen_asr/inference/utils.py SUPPORTED_LANGUAGES. */
export const SUPPORTED_LANGUAGES = [
  'Chinese', 'English', 'Cantonese', 'Arabic', 'German', 'French', 'Spanish', 'Portuguese',
  'Indonesian', 'Italian', 'Korean', 'Russian', 'Thai', 'Vietnamese', 'Japanese', 'Turkish',
  'Hindi', 'Malay', 'Dutch', 'Swedish', 'Danish', 'Finnish', 'Polish', 'Czech', 'Filipino',
  'Persian', 'Greek', 'Romanian', 'Hungarian', 'Macedonian',
] as const;

export const AUDIO_PAD = '<|audio_pad|>';
export const ASR_TEXT_TAG = '<asr_text>';
const LANG_PREFIX = 'language ';

/** 'cHINese' -> 'Chinese' (first code point upper-cased, the rest lower-cased). */
export function normalizeLanguageName(language: string): string {
  const s = pyStrip(language);
  const chars = Array.from(s);
  return (chars[0] ?? '').toUpperCase() + chars.slice(1).join('').toLowerCase();
}

/** Normalises and validates a --language value; undefined or blank means "detect". */
export function resolveLanguage(language: string | undefined): string | undefined {
  if (language === undefined || pyStrip(language) === '') return undefined;
  const name = normalizeLanguageName(language);
  if (!(SUPPORTED_LANGUAGES as readonly string[]).includes(name)) {
    throw new UserError(`--language: unsupported language "${language}" (supported: ${SUPPORTED_LANGUAGES.join(', ')})`);
  }
  return name;
}

/** The prompt text: the official chat template with the generation prompt, one audio placeholder. */
export function promptText(opts: { context?: string; language?: string }): string {
  let text = `<|im_start|>system\n${opts.context ?? ''}<|im_end|>\n`
    + `<|im_start|>user\n<|audio_start|>${AUDIO_PAD}<|audio_end|><|im_end|>\n<|im_start|>assistant\n`;
  if (opts.language) text += `language ${opts.language}${ASR_TEXT_TAG}`;
  return text;
}

export interface Prompt {
  ids: number[];
  /** Index of the first <|audio_pad|>: decoder_init's `audio_offset`. */
  audioOffset: number;
  audioTokens: number;
}

/**
 * Tokenises the prompt with `audioTokens` copies of <|audio_pad|> (the processor's
 * expansion). Added tokens split the text into independent pieces, so expanding the
 * single pad after tokenising gives the same ids as tokenising the expanded text.
 */
export function buildPrompt(tokenizer: Tokenizer, opts: { audioTokens: number; context?: string; language?: string }): Prompt {
  const padId = tokenizer.tokenId(AUDIO_PAD);
  if (padId === undefined) throw new UserError(`tokenizer has no ${AUDIO_PAD} token`);
  const ids = tokenizer.encode(promptText(opts));
  const pads = ids.reduce((n, id) => n + (id === padId ? 1 : 0), 0);
  if (pads !== 1) throw new UserError(`--context must not contain ${AUDIO_PAD}`);
  const audioOffset = ids.indexOf(padId);
  const expanded = [...ids.slice(0, audioOffset), ...new Array<number>(opts.audioTokens).fill(padId), ...ids.slice(audioOffset + 1)];
  return { ids: expanded, audioOffset, audioTokens: opts.audioTokens };
}

export interface AsrOutput { language: string; text: string }

/**
 * utils.py parse_asr_output: "language X<asr_text>text" -> (X, text); no tag -> the whole
 * string is text; "language None" -> no language (empty audio). With a forced language
 * the output is pure text. Repetitions are collapsed first.
 */
export function parseAsrOutput(raw: string | null | undefined, userLanguage?: string): AsrOutput {
  if (raw === null || raw === undefined) return { language: '', text: '' };
  let s = pyStrip(raw);
  if (!s) return { language: '', text: '' };
  s = detectAndFixRepetitions(s);
  if (userLanguage) return { language: userLanguage, text: s };
  const tagAt = s.indexOf(ASR_TEXT_TAG);
  if (tagAt < 0) return { language: '', text: pyStrip(s) };
  const meta = s.slice(0, tagAt);
  const textPart = s.slice(tagAt + ASR_TEXT_TAG.length);
  if (meta.toLowerCase().includes('language none')) {
    const t = pyStrip(textPart);
    return { language: '', text: t };
  }
  let language = '';
  for (const rawLine of pySplitLines(meta)) {
    const line = pyStrip(rawLine);
    if (!line) continue;
    if (line.toLowerCase().startsWith(LANG_PREFIX)) {
      const value = pyStrip(line.slice(LANG_PREFIX.length));
      if (value) language = normalizeLanguageName(value);
      break;
    }
  }
  return { language, text: pyStrip(textPart) };
}

/**
 * utils.py detect_and_fix_repetitions: a character repeated more than `threshold` times
 * becomes one; then a pattern of 1..20 characters repeated at least `threshold` times in
 * a row becomes one copy. Works on code points like Python strings.
 */
export function detectAndFixRepetitions(text: string, threshold = 20): string {
  const chars = Array.from(text);
  return fixPatternRepeats(fixCharRepeats(chars, threshold), threshold).join('');
}

function fixCharRepeats(s: string[], thresh: number): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    let count = 1;
    while (i + count < s.length && s[i + count] === s[i]) count += 1;
    if (count > thresh) out.push(s[i]);
    else for (let k = 0; k < count; k += 1) out.push(s[i + k]);
    i += count;
  }
  return out;
}

function fixPatternRepeats(s: string[], thresh: number, maxLen = 20): string[] {
  const n = s.length;
  const minRepeatChars = thresh * 2;
  if (n < minRepeatChars) return s;
  const sameAt = (a: number, b: number, k: number): boolean => {
    for (let j = 0; j < k; j += 1) if (s[a + j] !== s[b + j]) return false;
    return true;
  };
  const out: string[] = [];
  let i = 0;
  let found = false;
  while (i <= n - minRepeatChars) {
    found = false;
    for (let k = 1; k <= maxLen; k += 1) {
      if (i + k * thresh > n) break;
      let valid = true;
      for (let rep = 1; rep < thresh; rep += 1) {
        if (!sameAt(i, i + rep * k, k)) { valid = false; break; }
      }
      if (valid) {
        let end = i + thresh * k;
        while (end + k <= n && sameAt(i, end, k)) end += k;
        out.push(...s.slice(i, i + k), ...fixPatternRepeats(s.slice(end), thresh, maxLen));
        i = n;
        found = true;
        break;
      }
    }
    if (found) break;
    out.push(s[i]);
    i += 1;
  }
  if (!found) out.push(...s.slice(i));
  return out;
}

/**
 * True when the tail of `tokens` is one cycle of 1..maxCycle tokens repeated at least
 * `minRepeats` times: a greedy decoder in such a loop never leaves it, and the text
 * clean-up above would collapse the repeats anyway, so generation can stop.
 */
export function endsInRepeatedCycle(tokens: readonly number[], opts: { maxCycle?: number; minRepeats?: number } = {}): boolean {
  const maxCycle = opts.maxCycle ?? 8;
  const minRepeats = opts.minRepeats ?? 20;
  const n = tokens.length;
  for (let c = 1; c <= maxCycle && c * minRepeats <= n; c += 1) {
    let ok = true;
    for (let i = n - c * minRepeats; i < n - c && ok; i += 1) if (tokens[i] !== tokens[i + c]) ok = false;
    if (ok) return true;
  }
  return false;
}

/** Python str.isspace() characters, for strip() and friends. */
const PY_SPACE = /[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && PY_SPACE.test(s[a])) a += 1;
  while (b > a && PY_SPACE.test(s[b - 1])) b -= 1;
  return s.slice(a, b);
}

/** Python str.splitlines() (without keepends). */
function pySplitLines(s: string): string[] {
  if (s === '') return [];
  const lines = s.split(/\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/u);
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
