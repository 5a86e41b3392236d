import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Prng } from '../common/prng.js';
import { UserError } from '../common/errors.js';
import { readSupportFiles } from '../checkpoint/support-files.js';
import { tinyCheckpointDir, tinyCheckpointVariantDir } from '../fixtures/test-support.js';
import { QWEN2_SPLIT_PATTERN, Tokenizer, pretokenize } from './tokenizer.js';

/** GPT-2 byte characters, written out independently of the implementation. */
function byteChar(b: number): string {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  if (printable) return String.fromCharCode(b);
  let k = 0;
  for (let x = 0; x < b; x += 1) if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) k += 1;
  return String.fromCharCode(0x100 + k);
}

function randomText(rng: Prng, length: number): string {
  const ranges: [number, number][] = [[0x20, 0x7e], [0x0a, 0x0a], [0xa0, 0x7ff], [0x800, 0xd7ff], [0xe000, 0xfffd], [0x10000, 0x10ffff]];
  let s = '';
  for (let i = 0; i < length; i += 1) {
    const [lo, hi] = ranges[rng.nextU32() % ranges.length];
    s += String.fromCodePoint(lo + (rng.nextU32() % (hi - lo + 1)));
  }
  return s;
}

describe('Tokenizer on the fixture checkpoint (vocab.json + merges.txt)', () => {
  let tok: Tokenizer;
  beforeAll(async () => { tok = await Tokenizer.load(await tinyCheckpointDir()); });

  it('encodes text to the real Qwen2 ids', () => {
    expect(tok.encode('The quick brown fox jumps over the lazy dog.')).toEqual([785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13]);
    expect(tok.encode('meeting about Strix Halo')).toEqual([61249, 911, 4509, 941, 45249]);
    expect(tok.encode('language English<asr_text>')).toEqual([11528, 6364, 151704]);
    expect(tok.encode('\n')).toEqual([198]);
    expect(tok.encode(' ')).toEqual([220]);
  });

  it('matches added tokens before BPE only in encode()', () => {
    expect(tok.encode('<|im_start|>system\n<|im_end|>')).toEqual([151644, 8948, 198, 151645]);
    expect(tok.encodeOrdinary('<|im_end|>')).not.toContain(151645);
    expect(tok.decode(tok.encodeOrdinary('<|im_end|>'))).toBe('<|im_end|>');
  });

  it('maps every one of the 256 byte tokens back to its byte', () => {
    for (let b = 0; b < 256; b += 1) {
      const id = tok.tokenId(byteChar(b));
      expect(id, `byte ${b}`).toBeDefined();
      expect(Array.from(tok.decodeBytes([id!]))).toEqual([b]);
    }
  });

  it('round-trips every ASCII character and every UTF-8 lead/continuation byte', () => {
    for (let c = 0; c < 128; c += 1) expect(tok.decode(tok.encode(String.fromCharCode(c)))).toBe(String.fromCharCode(c));
    // U+0080..U+07FF use leads C2..DF, U+0800.. E0..EF, astral F0..F4; all continuation bytes 80..BF appear.
    const leads3 = Array.from({ length: 16 }, (_, e) => Math.max(0x800, e << 12) + 0x123); // E0..EF
    const leads4 = [0x10000, 0x40000, 0x80000, 0xc0000, 0x100000, 0x10ffff]; // F0..F4
    const probe = [...leads3, 0xffff, ...leads4].map((cp) => String.fromCodePoint(cp)).join('');
    const seen = new Set<number>();
    for (let cp = 0x80; cp < 0x800; cp += 1) for (const b of new TextEncoder().encode(String.fromCodePoint(cp))) seen.add(b);
    for (const b of new TextEncoder().encode(probe)) seen.add(b);
    const text = probe + Array.from({ length: 0x780 }, (_, i) => String.fromCodePoint(0x80 + i)).join('');
    expect(tok.decode(tok.encode(text.normalize('NFC')))).toBe(text.normalize('NFC'));
    // Every byte a valid UTF-8 string can contain (everything but C0, C1, F5..FF) was exercised.
    for (let b = 0; b < 256; b += 1) if (b >= 0x80 && !(b === 0xc0 || b === 0xc1 || b >= 0xf5)) expect(seen.has(b), `byte ${b}`).toBe(true);
  });

  it('round-trips random UTF-8 text (NFC, as the normaliser leaves it)', () => {
    const rng = new Prng(1234);
    for (let i = 0; i < 200; i += 1) {
      const s = randomText(rng, 1 + (rng.nextU32() % 40)).normalize('NFC');
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it('decodes invalid UTF-8 with replacement characters like HF (maximal subparts)', () => {
    const id = (b: number): number => tok.tokenId(byteChar(b))!;
    expect(tok.decode([id(0xff)])).toBe('\ufffd');
    expect(tok.decode([id(0xe2), id(0x82), id(0x61)])).toBe('\ufffda');
    expect(tok.decode([id(0xc0), id(0x80)])).toBe('\ufffd\ufffd');
    // A character split across tokens is joined before decoding.
    expect(tok.decode([id(0xe2), id(0x82), id(0xac)])).toBe('\u20ac');
  });

  it('applies NFC before BPE', () => {
    expect(tok.encode('e\u0301')).toEqual(tok.encode('\u00e9'));
  });

  it('skips special tokens on request but keeps <asr_text> (not special)', () => {
    const ids = [...tok.encode('language English<asr_text>'), 785, 151645];
    expect(tok.decode(ids)).toBe('language English<asr_text>The<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('language English<asr_text>The');
    expect(tok.decode([151935, 785])).toBe('The'); // an id with no token is dropped
  });
});

describe('pretokenize (Qwen2 split pattern)', () => {
  it('splits like the Hugging Face pre-tokenizer', () => {
    expect(pretokenize("Hello world's  123 !!\n\n  foo")).toEqual(['Hello', ' world', "'s", ' ', ' ', '1', '2', '3', ' !!\n\n', ' ', ' foo']);
    expect(pretokenize("I'M you'LL")).toEqual(['I', "'M", ' you', "'LL"]);
    expect(pretokenize('a\n\n\nb  \n c')).toEqual(['a', '\n\n\n', 'b', '  \n', ' c']);
    expect(pretokenize('x\u3000y')).toEqual(['x', '\u3000y']);
    expect(pretokenize('end   ')).toEqual(['end', '   ']);
    // U+0085 is whitespace for Oniguruma (not for JS \s); U+FEFF is not.
    expect(pretokenize('a\u0085\u0085b')).toEqual(['a', '\u0085', '\u0085b']);
    expect(pretokenize('.\uFEFF\uFEFF')).toEqual(['.\uFEFF\uFEFF']);
  });
});

describe('Tokenizer.load variants and errors', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'qwen3-tok-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  const byteVocab = (): Record<string, number> => Object.fromEntries(Array.from({ length: 256 }, (_, b) => [byteChar(b), b]));

  it('loads tokenizer.json (merges as strings or pairs) with added tokens', async () => {
    const vocab = { ...byteVocab(), 'Ġt': 256, 'Ġth': 257, he: 258, 'Ġthe': 259 };
    for (const merges of [['Ġ t', 'Ġt h', 'h e', 'Ġth e'], [['Ġ', 't'], ['Ġt', 'h'], ['h', 'e'], ['Ġth', 'e']]]) {
      const sub = join(dir, `tj-${typeof merges[0]}`);
      await rm(sub, { recursive: true, force: true });
      await mkdir(sub);
      await writeFile(join(sub, 'tokenizer.json'), JSON.stringify({
        added_tokens: [{ id: 300, content: '<|x|>', special: true }],
        pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_SPLIT_PATTERN }, behavior: 'Isolated' }, { type: 'ByteLevel' }] },
        model: { type: 'BPE', vocab, merges },
      }));
      const tok = await Tokenizer.load(sub);
      expect(tok.encode(' the<|x|>he')).toEqual([259, 300, 258]);
      expect(tok.decode([259, 300, 258], { skipSpecialTokens: true })).toBe(' thehe');
    }
  });

  it('rejects a foreign pre-tokenizer, bad merges and missing files with errors naming the file', async () => {
    const sub = join(dir, 'bad');
    await mkdir(sub, { recursive: true });
    await writeFile(join(sub, 'tokenizer.json'), JSON.stringify({
      pre_tokenizer: { type: 'Split', pattern: { Regex: '\\w+' } }, model: { vocab: byteVocab(), merges: [] },
    }));
    await expect(Tokenizer.load(sub)).rejects.toThrow(/tokenizer\.json: unsupported pre-tokenizer regex/);
    await writeFile(join(sub, 'tokenizer.json'), JSON.stringify({ model: { vocab: byteVocab(), merges: ['x y'] } }));
    await expect(Tokenizer.load(sub)).rejects.toThrow(/tokenizer\.json: merge 1 "x y" uses a token missing/);
    await writeFile(join(sub, 'tokenizer.json'), JSON.stringify({ model: { vocab: { a: 0 }, merges: [] } }));
    await expect(Tokenizer.load(sub)).rejects.toThrow(/lacks the byte token/);
    const empty = join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    const err = await Tokenizer.load(empty).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/cannot read tokenizer file .*vocab\.json: no such file/);
  });
});

/** Every string the tests above tokenize, plus seeded random text: what the tokenizer formats must agree on. */
function testStrings(): string[] {
  const fixed = [
    'The quick brown fox jumps over the lazy dog.', 'meeting about Strix Halo', 'language English<asr_text>', '\n', ' ',
    '<|im_start|>system\n<|im_end|>', "Hello world's  123 !!\n\n  foo", "I'M you'LL", 'a\n\n\nb  \n c', 'x\u3000y', 'end   ',
    'a\u0085\u0085b', '.\uFEFF\uFEFF', 'e\u0301', '\u00e9', ' the<|x|>he', 'Ship it.',
    '<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\nlanguage Chinese<asr_text>你好，世界',
  ];
  const rng = new Prng(99);
  const random = Array.from({ length: 300 }, () => randomText(rng, 1 + (rng.nextU32() % 60)));
  return [...fixed, ...random];
}

describe('the tokenizer of a transformers-native (-hf) checkpoint: tokenizer.json alone', () => {
  let original: Tokenizer;
  let fromJson: Tokenizer;
  let derivedDir: string;
  let originalDir: string;
  beforeAll(async () => {
    originalDir = await tinyCheckpointDir();
    const hfDir = await tinyCheckpointVariantDir({ format: 'hf' });
    original = await Tokenizer.load(originalDir);
    fromJson = await Tokenizer.load(hfDir);
    // The files an export writes for it: vocab.json, merges.txt, tokenizer_config.json derived from tokenizer.json.
    derivedDir = await mkdtemp(join(tmpdir(), 'qwen3-tok-derived-'));
    const files = await readSupportFiles(hfDir, { vocabSize: 151936, expectedTokens: [] });
    for (const f of files) await writeFile(join(derivedDir, f.name), f.bytes);
  });
  afterAll(async () => { await rm(derivedDir, { recursive: true, force: true }); });

  it('derives exactly the slow files, and no tokenizer.json', async () => {
    const names = (await readdir(derivedDir)).sort();
    expect(names).toEqual(['chat_template.json', 'merges.txt', 'preprocessor_config.json', 'tokenizer_config.json', 'vocab.json']);
  });

  it('tokenizes every test string exactly like the original files, from tokenizer.json and from the derived files', async () => {
    const derived = await Tokenizer.load(derivedDir);
    for (const s of testStrings()) {
      const want = original.encode(s);
      expect(fromJson.encode(s), JSON.stringify(s)).toEqual(want);
      expect(derived.encode(s), JSON.stringify(s)).toEqual(want);
      expect(derived.decode(want)).toBe(original.decode(want));
      expect(fromJson.decode(want, { skipSpecialTokens: true })).toBe(original.decode(want, { skipSpecialTokens: true }));
    }
    for (let id = 151643; id <= 151704; id += 1) {
      expect([id, fromJson.token(id), fromJson.isSpecial(id)]).toEqual([id, original.token(id), original.isSpecial(id)]);
      expect([id, derived.token(id), derived.isSpecial(id)]).toEqual([id, original.token(id), original.isSpecial(id)]);
    }
    expect(derived.idCount).toBe(original.idCount);
  });

  it('derives files byte-identical to the original checkpoint\'s (same writer conventions as transformers)', async () => {
    for (const name of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'preprocessor_config.json', 'chat_template.json']) {
      expect(Buffer.compare(await readFile(join(derivedDir, name)), await readFile(join(originalDir, name))), name).toBe(0);
    }
  });
});
