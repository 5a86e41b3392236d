/**
 * The tokenizer and processor files a model directory carries, read from a checkpoint of either
 * format, parsed and checked before any export work starts:
 *
 *   original: vocab.json + merges.txt + tokenizer_config.json, preprocessor_config.json,
 *             chat_template.json (and tokenizer.json etc. when present): copied verbatim.
 *   -hf:      tokenizer.json, processor_config.json, chat_template.jinja: the same files derived
 *             (vocab.json, merges.txt and tokenizer_config.json's added_tokens_decoder from
 *             tokenizer.json; preprocessor_config.json from processor_config.json's
 *             feature_extractor; chat_template.json from the .jinja), so both formats of one
 *             model give one model directory. tokenizer.json itself is then not copied: the
 *             original checkpoints have none, and the derived files say the same.
 *
 * Every tokenizer that ships is built once (a truncated vocab.json, a broken merges.txt or
 * tokenizer_config.json fails here, naming the file) and must hold the special tokens at the
 * ids config.json names.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';
import {
  parseTokenizerConfig, parseTokenizerJson, Tokenizer, type AddedTokenEntry, type ParsedTokenizerJson, type TextFile,
} from '../runtime/tokenizer.js';
import { parseJsonWith } from './config.js';

export interface SupportFile { name: string; bytes: Uint8Array }

/** A token the tokenizer must hold at an id (e.g. `<|audio_pad|>` at config.json's audio_token_id). */
export interface ExpectedToken { id: number; content: string; what: string }

export interface SupportFileOptions {
  /** Rows of the embedding table: no tokenizer id may reach it. */
  vocabSize: number;
  expectedTokens: readonly ExpectedToken[];
}

/** Files copied verbatim when the checkpoint has them. */
export const COPIED_SUPPORT_FILES: readonly string[] = [
  'added_tokens.json', 'chat_template.json', 'merges.txt', 'preprocessor_config.json',
  'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json',
];

const utf8 = new TextEncoder();

/** Reads, checks and (for -hf) derives the model directory's support files, sorted by name. */
export async function readSupportFiles(dir: string, opts: SupportFileOptions): Promise<SupportFile[]> {
  const read = async (name: string): Promise<(TextFile & { bytes: Uint8Array }) | undefined> => {
    const file = join(dir, name);
    if (!(await isFile(file))) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw fsError('cannot read', file, err);
    }
    return { text: utf8Text(bytes, file), file, bytes };
  };
  const files = new Map<string, Uint8Array>();
  const present = new Map<string, TextFile & { bytes: Uint8Array }>();
  for (const name of COPIED_SUPPORT_FILES) {
    const f = await read(name);
    if (f) present.set(name, f);
  }
  const vocab = present.get('vocab.json');
  const merges = present.get('merges.txt');
  const json = present.get('tokenizer.json');
  const config = present.get('tokenizer_config.json');
  if (vocab || merges) {
    if (!vocab || !merges) {
      throw new UserError(`${(vocab ?? merges)!.file}: ${vocab ? 'merges.txt' : 'vocab.json'} is missing beside it (a byte-level BPE tokenizer needs both)`);
    }
    checkTokenizer(Tokenizer.fromVocabAndMerges(vocab, merges, config), config ?? vocab, opts);
    if (json) checkTokenizer(Tokenizer.fromTokenizerJson(json, config), json, opts);
    for (const [name, f] of present) files.set(name, f.bytes);
  } else if (json) {
    const parsed = parseTokenizerJson(json.text, json.file);
    const derived = deriveSlowTokenizerFiles(parsed, config, json.file);
    const derivedConfig = { text: derived['tokenizer_config.json'], file: `${json.file} (derived tokenizer_config.json)` };
    checkTokenizer(
      Tokenizer.fromVocabAndMerges(
        { text: derived['vocab.json'], file: `${json.file} (derived vocab.json)` },
        { text: derived['merges.txt'], file: `${json.file} (derived merges.txt)` },
        derivedConfig),
      derivedConfig, opts);
    for (const [name, f] of present) if (name !== 'tokenizer.json') files.set(name, f.bytes);
    for (const [name, text] of Object.entries(derived)) files.set(name, utf8.encode(text));
  } else {
    throw new UserError(`${dir}: no tokenizer (expected vocab.json + merges.txt, or tokenizer.json)`);
  }

  if (!files.has('preprocessor_config.json')) {
    const processor = await read('processor_config.json');
    const derived = processor ? preprocessorFromProcessor(processor) : undefined;
    if (derived !== undefined) files.set('preprocessor_config.json', utf8.encode(derived));
  }
  if (!files.has('chat_template.json')) {
    const jinja = await read('chat_template.jinja');
    if (jinja) files.set('chat_template.json', utf8.encode(chatTemplateJson(jinja.text)));
  }
  return [...files.entries()].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The tokenizer must stay inside the embedding table and hold each expected token at its id. */
function checkTokenizer(tok: Tokenizer, where: TextFile, opts: SupportFileOptions): void {
  if (tok.idCount > opts.vocabSize) {
    throw new UserError(`${where.file}: token id ${tok.idCount - 1} (${JSON.stringify(tok.token(tok.idCount - 1))}) is outside the model's vocabulary (vocab_size ${opts.vocabSize})`);
  }
  for (const t of opts.expectedTokens) {
    const found = tok.token(t.id);
    if (found !== t.content) {
      throw new UserError(`${where.file}: id ${t.id} (${t.what}) is ${found === undefined ? 'not a token' : JSON.stringify(found)}, expected ${JSON.stringify(t.content)}`);
    }
  }
}

/**
 * vocab.json, merges.txt and tokenizer_config.json from tokenizer.json, in the form
 * transformers writes them: vocab.json compact in id order, merges.txt under a `#version: 0.2`
 * line, tokenizer_config.json with sorted keys, two-space indent and `added_tokens_decoder`
 * (from tokenizer.json's added tokens) beside the fields the checkpoint's own
 * tokenizer_config.json has. A tokenizer_config.json that already has added_tokens_decoder
 * is kept as it is.
 */
export function deriveSlowTokenizerFiles(
  parsed: ParsedTokenizerJson, config: TextFile | undefined, jsonFile: string,
): Record<'vocab.json' | 'merges.txt' | 'tokenizer_config.json', string> {
  const byId = [...parsed.vocab].sort((a, b) => a[1] - b[1]);
  const vocabJson = `{${byId.map(([token, id]) => `${JSON.stringify(token)}:${id}`).join(',')}}`;
  for (const [a, b] of parsed.merges) {
    if (/[ \n\r]/.test(a + b)) throw new UserError(`${jsonFile}: merge ${JSON.stringify([a, b])} holds a space or newline and cannot be written to merges.txt`);
  }
  const mergesTxt = `#version: 0.2\n${parsed.merges.map(([a, b]) => `${a} ${b}\n`).join('')}`;
  let tokenizerConfig: string;
  const own = config ? parseTokenizerConfig(config.text, config.file) : undefined;
  if (config && own?.hasAddedTokens) {
    tokenizerConfig = config.text;
  } else {
    const fields: Record<string, unknown> = { ...(own?.fields ?? {}), added_tokens_decoder: addedTokensDecoder(parsed.added) };
    tokenizerConfig = `${JSON.stringify(sortedKeys(fields), null, 2)}\n`;
  }
  return { 'merges.txt': mergesTxt, 'tokenizer_config.json': tokenizerConfig, 'vocab.json': vocabJson };
}

function addedTokensDecoder(added: readonly AddedTokenEntry[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const t of [...added].sort((a, b) => a.id - b.id)) {
    out[String(t.id)] = {
      content: t.content, lstrip: t.lstrip, normalized: t.normalized, rstrip: t.rstrip, single_word: t.singleWord, special: t.special,
    };
  }
  return out;
}

const sortedKeys = (o: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

const ProcessorConfigSchema = z.looseObject({
  processor_class: z.string().optional(),
  feature_extractor: z.looseObject({}).optional(),
});

/**
 * preprocessor_config.json from a transformers-5 processor_config.json, which nests the
 * feature extractor's settings; undefined when it does not (nothing to derive).
 */
export function preprocessorFromProcessor(processor: TextFile): string | undefined {
  const cfg = parseJsonWith(ProcessorConfigSchema, processor.text, processor.file);
  if (!cfg.feature_extractor) return undefined;
  const fields: Record<string, unknown> = { ...cfg.feature_extractor };
  if (cfg.processor_class !== undefined && fields.processor_class === undefined) fields.processor_class = cfg.processor_class;
  return `${JSON.stringify(sortedKeys(fields), null, 2)}\n`;
}

/** chat_template.json as transformers writes it around a template. */
export function chatTemplateJson(template: string): string {
  return `${JSON.stringify({ chat_template: template }, null, 2)}\n`;
}

/** Tokenizer and config files are UTF-8 JSON or text; anything else is refused by name. */
function utf8Text(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${file}: not valid UTF-8 text`);
  }
}

async function isFile(p: string): Promise<boolean> {
  try { return (await stat(p)).isFile(); } catch { return false; }
}
