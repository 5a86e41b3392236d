import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';
import { parseJsonWith } from '../checkpoint/config.js';

/**
 * Qwen2 byte-level BPE, as Hugging Face's Qwen2Tokenizer(Fast) runs it:
 * 1. added tokens (tokenizer_config.json `added_tokens_decoder`, tokenizer.json
 *    `added_tokens`) are cut out of the raw text first, leftmost-longest;
 * 2. the rest is NFC-normalised and split by the Qwen2 pre-tokenizer regex;
 * 3. each piece's UTF-8 bytes become GPT-2 byte characters, merged by merge rank.
 * Decoding maps byte characters back to bytes and decodes UTF-8 lossily (U+FFFD for
 * invalid sequences, like `errors="replace"` / from_utf8_lossy).
 */

export interface AddedToken { id: number; content: string; special: boolean }

/** A file's text and its path (for messages). */
export interface TextFile { text: string; file: string }

/** An added token with every flag tokenizer.json / tokenizer_config.json carry. */
export interface AddedTokenEntry extends AddedToken {
  lstrip: boolean; rstrip: boolean; normalized: boolean; singleWord: boolean;
}

/** What tokenizer.json holds for a byte-level BPE: the vocabulary, the merges in rank order, the added tokens. */
export interface ParsedTokenizerJson {
  vocab: Map<string, number>;
  merges: [string, string][];
  added: AddedTokenEntry[];
}

/**
 * The Qwen2 split pattern from tokenizer.json, for reference:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
export const QWEN2_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// JavaScript has no inline (?i:...) and its \s differs from Oniguruma's (the engine of HF
// tokenizers): there \s is U+0009-000D, U+0085 and the Z categories; JS adds U+FEFF and
// lacks U+0085. Spell both out. (U+017F long s case-folds to s.)
const WS = '\\t-\\r\\x85\\p{Z}';
const PRETOKENIZE = new RegExp(
  [
    "'(?:[sS\\u017F]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])",
    '[^\\r\\n\\p{L}\\p{N}]?\\p{L}+',
    '\\p{N}',
    ` ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*`,
    `[${WS}]*[\\r\\n]+`,
    `[${WS}]+(?![^${WS}])`,
    `[${WS}]+`,
  ].join('|'),
  'gu',
);

/** GPT-2's reversible byte <-> printable character table. */
function byteTables(): { byteToChar: string[]; charToByte: Map<string, number> } {
  const byteToChar = new Array<string>(256);
  const direct = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  for (let b = 0; b < 256; b += 1) {
    byteToChar[b] = String.fromCharCode(direct(b) ? b : 256 + extra);
    if (!direct(b)) extra += 1;
  }
  const charToByte = new Map(byteToChar.map((c, b) => [c, b]));
  return { byteToChar, charToByte };
}

const { byteToChar: BYTE_TO_CHAR, charToByte: CHAR_TO_BYTE } = byteTables();
const utf8 = new TextEncoder();
const lossyUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const PIECE_CACHE_LIMIT = 50_000;

export class Tokenizer {
  private readonly vocab: Map<string, number>;
  private readonly idToToken: (string | undefined)[];
  private readonly mergeRanks: Map<string, number>;
  private readonly added: Map<number, AddedToken>;
  private readonly addedByContent: Map<string, AddedToken>;
  private readonly addedPattern: RegExp | undefined;
  private readonly pieceCache = new Map<string, number[]>();

  /** `source` names the files in error messages. */
  constructor(vocab: Map<string, number>, merges: ReadonlyArray<readonly [string, string]>, added: AddedToken[], source: string) {
    this.vocab = vocab;
    this.mergeRanks = new Map();
    merges.forEach(([a, b], rank) => {
      if (!vocab.has(a) || !vocab.has(b) || !vocab.has(a + b)) {
        throw new UserError(`${source}: merge ${rank + 1} "${a} ${b}" uses a token missing from the vocabulary`);
      }
      const key = `${a} ${b}`;
      if (!this.mergeRanks.has(key)) this.mergeRanks.set(key, rank);
    });
    for (const c of BYTE_TO_CHAR) {
      if (!vocab.has(c)) throw new UserError(`${source}: vocabulary lacks the byte token ${JSON.stringify(c)} (not a byte-level BPE vocabulary)`);
    }
    this.added = new Map(added.map((t) => [t.id, t]));
    this.addedByContent = new Map(added.map((t) => [t.content, t]));
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    for (const t of added) maxId = Math.max(maxId, t.id);
    this.idToToken = new Array<string | undefined>(maxId + 1);
    for (const [token, id] of vocab) this.idToToken[id] = token;
    for (const t of added) this.idToToken[t.id] = t.content;
    const contents = [...this.addedByContent.keys()].filter((c) => c.length > 0).sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
    this.addedPattern = contents.length
      ? new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gu')
      : undefined;
  }

  /** Loads tokenizer.json when present, else vocab.json + merges.txt, plus tokenizer_config.json's added tokens. */
  static async load(dir: string): Promise<Tokenizer> {
    const configFile = join(dir, 'tokenizer_config.json');
    const config = (await exists(configFile)) ? { text: await readText(configFile), file: configFile } : undefined;
    const jsonFile = join(dir, 'tokenizer.json');
    if (await exists(jsonFile)) return Tokenizer.fromTokenizerJson({ text: await readText(jsonFile), file: jsonFile }, config);
    const vocabFile = join(dir, 'vocab.json');
    const mergesFile = join(dir, 'merges.txt');
    return Tokenizer.fromVocabAndMerges(
      { text: await readText(vocabFile), file: vocabFile }, { text: await readText(mergesFile), file: mergesFile }, config);
  }

  /** From tokenizer.json alone (vocab, merges and added tokens), plus tokenizer_config.json's added tokens when given. */
  static fromTokenizerJson(json: TextFile, config?: TextFile): Tokenizer {
    const parsed = parseTokenizerJson(json.text, json.file);
    const added = mergeAdded(parsed.added, config ? parseTokenizerConfig(config.text, config.file).added : []);
    return new Tokenizer(parsed.vocab, parsed.merges, added, json.file);
  }

  /** From vocab.json + merges.txt (the "slow" files), plus tokenizer_config.json's added tokens when given. */
  static fromVocabAndMerges(vocab: TextFile, merges: TextFile, config?: TextFile): Tokenizer {
    const added = config ? parseTokenizerConfig(config.text, config.file).added : [];
    return new Tokenizer(parseVocab(vocab.text, vocab.file), parseMerges(merges.text, merges.file), added, `${vocab.file} / ${merges.file}`);
  }

  /** Every id the tokenizer can produce or decode: one past the highest vocabulary or added-token id. */
  get idCount(): number {
    return this.idToToken.length;
  }

  /** Text -> ids, with added/special tokens in the text recognised (HF's default). */
  encode(text: string): number[] {
    const ids: number[] = [];
    if (!this.addedPattern) return this.encodeOrdinary(text);
    let last = 0;
    for (const m of text.matchAll(this.addedPattern)) {
      const at = m.index ?? 0;
      if (at > last) ids.push(...this.encodeOrdinary(text.slice(last, at)));
      ids.push(this.addedByContent.get(m[0])!.id);
      last = at + m[0].length;
    }
    if (last < text.length) ids.push(...this.encodeOrdinary(text.slice(last)));
    return ids;
  }

  /** Text -> ids treating everything as plain text (no added-token matching). */
  encodeOrdinary(text: string): number[] {
    const ids: number[] = [];
    for (const piece of pretokenize(text.normalize('NFC'))) ids.push(...this.encodePiece(piece));
    return ids;
  }

  /** Ids -> text. Unknown ids are skipped (as HF does); special added tokens are dropped when asked. */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    return lossyUtf8.decode(this.decodeBytes(ids, opts));
  }

  /** Ids -> the raw bytes they stand for (before UTF-8 decoding). */
  decodeBytes(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): Uint8Array {
    const bytes: number[] = [];
    for (const id of ids) {
      if (opts.skipSpecialTokens && this.added.get(id)?.special) continue;
      const token = this.idToToken[id];
      if (token === undefined) continue;
      // Like the ByteLevel decoder: a token made only of byte characters becomes those
      // bytes, anything else (e.g. an added token with non-byte characters) its UTF-8.
      const start = bytes.length;
      let allBytes = true;
      for (const ch of token) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b === undefined) { allBytes = false; break; }
        bytes.push(b);
      }
      if (!allBytes) {
        bytes.length = start;
        bytes.push(...utf8.encode(token));
      }
    }
    return Uint8Array.from(bytes);
  }

  /** The id of an added token or vocabulary entry, by its exact content. */
  tokenId(content: string): number | undefined {
    return this.addedByContent.get(content)?.id ?? this.vocab.get(content);
  }

  /** The vocabulary string of an id (byte-level alphabet), or an added token's content. */
  token(id: number): string | undefined {
    return this.idToToken[id];
  }

  isSpecial(id: number): boolean {
    return this.added.get(id)?.special ?? false;
  }

  private encodePiece(piece: string): number[] {
    const cached = this.pieceCache.get(piece);
    if (cached) return cached;
    let symbols = Array.from(utf8.encode(piece), (b) => BYTE_TO_CHAR[b]);
    // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is mergeable.
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i += 1) {
        const r = this.mergeRanks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const a = symbols[best];
      const b = symbols[best + 1];
      const next: string[] = [];
      for (let i = 0; i < symbols.length; i += 1) {
        if (i >= best && i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) { next.push(a + b); i += 1; }
        else next.push(symbols[i]);
      }
      symbols = next;
    }
    const ids = symbols.map((s) => this.vocab.get(s)!);
    if (this.pieceCache.size >= PIECE_CACHE_LIMIT) this.pieceCache.clear();
    this.pieceCache.set(piece, ids);
    return ids;
  }
}

/** Splits text into pre-tokens (HF Split, behaviour Isolated: unmatched gaps are pieces too). */
export function pretokenize(text: string): string[] {
  const out: string[] = [];
  let last = 0;
  for (const m of text.matchAll(PRETOKENIZE)) {
    const at = m.index ?? 0;
    if (at > last) out.push(text.slice(last, at));
    out.push(m[0]);
    last = at + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

const TOKEN_FLAGS = {
  special: z.boolean().default(false),
  lstrip: z.boolean().default(false),
  rstrip: z.boolean().default(false),
  normalized: z.boolean().default(false),
  single_word: z.boolean().default(false),
};
const AddedTokenEntrySchema = z.looseObject({ content: z.string(), ...TOKEN_FLAGS });

const TokenizerConfigSchema = z.looseObject({
  added_tokens_decoder: z.record(z.string().regex(/^\d+$/), AddedTokenEntrySchema).optional(),
});

const TokenizerJsonSchema = z.looseObject({
  added_tokens: z.array(z.looseObject({ id: z.number().int().nonnegative(), content: z.string(), ...TOKEN_FLAGS })).optional(),
  pre_tokenizer: z.unknown().optional(),
  model: z.looseObject({
    type: z.literal('BPE').optional(),
    // Checked by vocabFromObject / splitMerge: a schema pass over 150k entries is slow.
    vocab: z.record(z.string(), z.unknown()),
    merges: z.array(z.unknown()),
  }),
});

/** vocab.json -> Map (checked by hand: a schema pass over 150k entries costs more than the parse). */
export function parseVocab(text: string, file: string): Map<string, number> {
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (err) { throw new UserError(`${file}: not valid JSON (${(err as Error).message})`); }
  return vocabFromObject(raw, file);
}

function vocabFromObject(raw: unknown, file: string): Map<string, number> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new UserError(`${file}: expected an object of token -> id`);
  const vocab = new Map<string, number>();
  const obj = raw as Record<string, unknown>;
  for (const token in obj) {
    const id = obj[token];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new UserError(`${file}: ${JSON.stringify(token)}: expected a non-negative integer id`);
    vocab.set(token, id);
  }
  return vocab;
}

type FlagFields = { content: string; special: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean; single_word: boolean };
const entryOf = (id: number, t: FlagFields): AddedTokenEntry => ({
  id, content: t.content, special: t.special, lstrip: t.lstrip, rstrip: t.rstrip, normalized: t.normalized, singleWord: t.single_word,
});

/**
 * tokenizer_config.json: its added tokens (sorted by id) and whether it has an
 * `added_tokens_decoder` at all (transformers 5 leaves it out beside a tokenizer.json).
 */
export function parseTokenizerConfig(text: string, file: string): { added: AddedTokenEntry[]; hasAddedTokens: boolean; fields: Record<string, unknown> } {
  const cfg = parseJsonWith(TokenizerConfigSchema, text, file);
  const added = Object.entries(cfg.added_tokens_decoder ?? {}).map(([id, t]) => entryOf(Number(id), t)).sort((a, b) => a.id - b.id);
  return { added, hasAddedTokens: cfg.added_tokens_decoder !== undefined, fields: cfg };
}

/** tokenizer.json -> vocabulary, merges and added tokens, each checked. */
export function parseTokenizerJson(text: string, file: string): ParsedTokenizerJson {
  const tj = parseJsonWith(TokenizerJsonSchema, text, file);
  checkPreTokenizer(tj.pre_tokenizer, file);
  const added = (tj.added_tokens ?? []).map((t) => entryOf(t.id, t));
  return { vocab: vocabFromObject(tj.model.vocab, file), merges: tj.model.merges.map((m) => splitMerge(m, file)), added };
}

/** merges.txt -> merges in rank order (an optional `#version` first line; blank lines skipped). */
export function parseMerges(text: string, file: string): [string, string][] {
  return text
    .split('\n')
    .map((line) => line.replace(/\r$/, ''))
    .filter((line, i) => line.length > 0 && !(i === 0 && line.startsWith('#version')))
    .map((line) => splitMerge(line, file));
}

/** tokenizer_config.json wins for the `special` flag (it is what transformers reads). */
function mergeAdded(fromJson: AddedToken[], fromConfig: AddedToken[]): AddedToken[] {
  const byId = new Map<number, AddedToken>();
  for (const t of fromJson) byId.set(t.id, { id: t.id, content: t.content, special: t.special });
  for (const t of fromConfig) byId.set(t.id, t);
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

function splitMerge(m: unknown, file: string): [string, string] {
  if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string' && m[0] && m[1]) return [m[0], m[1]];
  if (typeof m !== 'string') throw new UserError(`${file}: malformed merge ${JSON.stringify(m)}`);
  const parts = m.split(' ');
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new UserError(`${file}: malformed merge line ${JSON.stringify(m)}`);
  return [parts[0], parts[1]];
}

/** Rejects a tokenizer.json whose pre-tokenizer is not the Qwen2 one (we hard-code that regex). */
function checkPreTokenizer(pre: unknown, file: string): void {
  if (pre === undefined || pre === null) return;
  const patterns: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) { node.forEach(walk); return; }
    if (node && typeof node === 'object') {
      const obj = node as Record<string, unknown>;
      const pattern = obj.pattern as { Regex?: unknown } | undefined;
      if (obj.type === 'Split' && typeof pattern?.Regex === 'string') patterns.push(pattern.Regex);
      Object.values(obj).forEach(walk);
    }
  };
  walk(pre);
  const other = patterns.find((p) => p !== QWEN2_SPLIT_PATTERN);
  if (other !== undefined) throw new UserError(`${file}: unsupported pre-tokenizer regex ${JSON.stringify(other)} (expected the Qwen2 pattern)`);
}

async function exists(path: string): Promise<boolean> {
  try { await access(path); return true; } catch { return false; }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw fsError('cannot read tokenizer file', path, err);
  }
}
