import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';
import { parseJsonWith } from '../checkpoint/config.js';

/**
 * Word error rate with a light version of Whisper's English text normaliser.
 *
 * Normalisation (applied to reference and hypothesis alike):
 * 1. Unicode NFKD, combining marks dropped (café -> cafe); lower case.
 * 2. Text in [brackets] or (parentheses) removed (annotations like [laughter]).
 * 3. Apostrophes removed inside words (don't -> dont, 'em -> em), so contracted and
 *    uncontracted spellings of the same token compare equal.
 * 4. Every other character that is not a letter or a digit becomes a space
 *    (punctuation, hyphens, symbols).
 * 5. Hesitations dropped: uh, um, umm, hmm, hm, mm, mhm, er, erm, ah, eh.
 * 6. Whitespace collapsed; words are the space-separated pieces.
 * Not done (unlike the full Whisper normaliser): number spelling, British/American
 * spelling maps, contraction expansion.
 *
 * WER = (substitutions + deletions + insertions) / reference words, from a word-level
 * Levenshtein alignment; the total pools the counts of all files.
 */

const FILLERS = new Set(['uh', 'um', 'umm', 'hmm', 'hm', 'mm', 'mhm', 'er', 'erm', 'ah', 'eh']);

export function normalizeForWer(text: string): string[] {
  const s = text
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .replace(/\[[^\]]*\]|\([^)]*\)/g, ' ')
    .replace(/['\u2018\u2019\u02bc`]/g, '')
    .replace(/[^\p{L}\p{N}]+/gu, ' ');
  return s.split(' ').filter((w) => w.length > 0 && !FILLERS.has(w));
}

export interface WordErrors {
  substitutions: number;
  deletions: number;
  insertions: number;
  referenceWords: number;
}

/** Minimum edit operations turning ref into hyp (ties prefer substitutions, then deletions). */
export function wordErrors(ref: readonly string[], hyp: readonly string[]): WordErrors {
  const n = ref.length;
  const m = hyp.length;
  // cost[j] for the current row, plus how it was reached, to count each kind of error.
  type Cell = { cost: number; s: number; d: number; i: number };
  let prev: Cell[] = Array.from({ length: m + 1 }, (_, j) => ({ cost: j, s: 0, d: 0, i: j }));
  for (let r = 1; r <= n; r += 1) {
    const row: Cell[] = [{ cost: r, s: 0, d: r, i: 0 }];
    for (let j = 1; j <= m; j += 1) {
      const same = ref[r - 1] === hyp[j - 1];
      const diag = prev[j - 1];
      const up = prev[j];
      const left = row[j - 1];
      const sub = { cost: diag.cost + (same ? 0 : 1), s: diag.s + (same ? 0 : 1), d: diag.d, i: diag.i };
      const del = { cost: up.cost + 1, s: up.s, d: up.d + 1, i: up.i };
      const ins = { cost: left.cost + 1, s: left.s, d: left.d, i: left.i + 1 };
      row.push(sub.cost <= del.cost && sub.cost <= ins.cost ? sub : del.cost <= ins.cost ? del : ins);
    }
    prev = row;
  }
  const last = prev[m];
  return { substitutions: last.s, deletions: last.d, insertions: last.i, referenceWords: n };
}

export function werOf(e: WordErrors): number {
  const errors = e.substitutions + e.deletions + e.insertions;
  if (e.referenceWords === 0) return errors === 0 ? 0 : 1;
  return errors / e.referenceWords;
}

/** One manifest entry with its audio path resolved against the manifest's folder. */
export interface ManifestEntry { audio: string; reference: string }

const ManifestSchema = z.array(z.union([
  z.strictObject({ audio: z.string().min(1), text: z.string() }),
  z.strictObject({ audio: z.string().min(1), text_file: z.string().min(1) }),
])).min(1);

/**
 * Reads a manifest: JSON (an array of {"audio": path, "text": reference} or
 * {"audio": path, "text_file": path of a .txt}) or TSV (lines `audio<TAB>reference`;
 * blank lines and lines starting with # are skipped). Relative paths are relative to
 * the manifest's folder.
 */
export async function readManifest(file: string): Promise<ManifestEntry[]> {
  let text: string;
  try { text = await readFile(file, 'utf8'); } catch (err) { throw fsError('cannot read manifest', file, err); }
  const base = dirname(resolve(file));
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    const entries = parseJsonWith(ManifestSchema, text, file);
    const out: ManifestEntry[] = [];
    for (const e of entries) {
      if ('text' in e) { out.push({ audio: resolve(base, e.audio), reference: e.text }); continue; }
      const refFile = resolve(base, e.text_file);
      let reference: string;
      try { reference = await readFile(refFile, 'utf8'); } catch (err) { throw fsError(`${file}: cannot read text_file`, refFile, err); }
      out.push({ audio: resolve(base, e.audio), reference: reference.trim() });
    }
    return out;
  }
  const out: ManifestEntry[] = [];
  for (const [i, rawLine] of text.split('\n').entries()) {
    const line = rawLine.replace(/\r$/, '');
    if (!line.trim() || line.startsWith('#')) continue;
    const tab = line.indexOf('\t');
    if (tab <= 0) throw new UserError(`${file}:${i + 1}: expected "audio<TAB>reference text"`);
    out.push({ audio: resolve(base, line.slice(0, tab)), reference: line.slice(tab + 1).trim() });
  }
  if (out.length === 0) throw new UserError(`${file}: no entries`);
  return out;
}

export interface FileWer extends WordErrors {
  audio: string;
  reference: string;
  hypothesis: string;
  wer: number;
}

export interface WerReport extends WordErrors {
  files: FileWer[];
  wer: number;
}

/**
 * Transcribes every entry with `transcribe` (the model, or a stub in tests) and scores it;
 * an entry whose `transcribe` gives undefined (a file it could not read) is left out.
 */
export async function evaluateWer(
  entries: readonly ManifestEntry[],
  transcribe: (audio: string) => Promise<string | undefined>,
  onFile?: (index: number) => void,
): Promise<WerReport> {
  const files: FileWer[] = [];
  for (const [i, entry] of entries.entries()) {
    onFile?.(i);
    const hypothesis = await transcribe(entry.audio);
    if (hypothesis === undefined) continue;
    const e = wordErrors(normalizeForWer(entry.reference), normalizeForWer(hypothesis));
    files.push({ audio: entry.audio, reference: entry.reference, hypothesis, ...e, wer: werOf(e) });
  }
  const total: WordErrors = {
    substitutions: files.reduce((n, f) => n + f.substitutions, 0),
    deletions: files.reduce((n, f) => n + f.deletions, 0),
    insertions: files.reduce((n, f) => n + f.insertions, 0),
    referenceWords: files.reduce((n, f) => n + f.referenceWords, 0),
  };
  return { files, ...total, wer: werOf(total) };
}
