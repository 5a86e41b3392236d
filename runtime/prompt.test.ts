import { beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import {
  buildPrompt, detectAndFixRepetitions, endsInRepeatedCycle, normalizeLanguageName, parseAsrOutput, resolveLanguage,
} from './prompt.js';
import { Tokenizer } from './tokenizer.js';

const PAD = 151676;

describe('buildPrompt', () => {
  let tok: Tokenizer;
  beforeAll(async () => { tok = await Tokenizer.load(await tinyCheckpointDir()); });

  it('gives the real Qwen3-ASR prompt ids with the audio pads at audio_offset', () => {
    const p = buildPrompt(tok, { audioTokens: 5 });
    expect(p.ids).toEqual([
      151644, 8948, 198, 151645, 198, // <|im_start|>system\n<|im_end|>\n
      151644, 872, 198, 151669, // <|im_start|>user\n<|audio_start|>
      PAD, PAD, PAD, PAD, PAD,
      151670, 151645, 198, 151644, 77091, 198, // <|audio_end|><|im_end|>\n<|im_start|>assistant\n
    ]);
    expect(p.audioOffset).toBe(9);
    expect(p.audioTokens).toBe(5);
  });

  it('appends "language X<asr_text>" for a forced language and puts the context in the system turn', () => {
    const p = buildPrompt(tok, { audioTokens: 2, language: 'English', context: 'The quick brown fox' });
    expect(p.ids).toEqual([
      151644, 8948, 198, 785, 3974, 13876, 38835, 151645, 198,
      151644, 872, 198, 151669, PAD, PAD, 151670, 151645, 198, 151644, 77091, 198,
      11528, 6364, 151704,
    ]);
    expect(p.audioOffset).toBe(13);
  });

  it('rejects a context holding an audio pad', () => {
    expect(() => buildPrompt(tok, { audioTokens: 1, context: 'x<|audio_pad|>' })).toThrow(UserError);
  });
});

describe('languages', () => {
  it('normalises and validates like the official helpers', () => {
    expect(normalizeLanguageName('cHINese')).toBe('Chinese');
    expect(resolveLanguage(' english ')).toBe('English');
    expect(resolveLanguage(undefined)).toBeUndefined();
    expect(resolveLanguage('  ')).toBeUndefined();
    expect(() => resolveLanguage('Klingon')).toThrow(/unsupported language "Klingon"/);
  });
});

describe('parseAsrOutput (values from the official parse_asr_output)', () => {
  const cases: [string, string | undefined, string, string][] = [
    ['language English<asr_text>Hello world.', undefined, 'English', 'Hello world.'],
    ['language None<asr_text>', undefined, '', ''],
    ['language None<asr_text> hi', undefined, '', 'hi'],
    ['Hello', undefined, '', 'Hello'],
    ['language chinese\nfoo\n<asr_text>你好', undefined, 'Chinese', '你好'],
    ['  Hello ', 'English', 'English', 'Hello'],
    ['', undefined, '', ''],
    ['foo\nlanguage   ENGLISH  \n<asr_text> x ', undefined, 'English', 'x'],
    ['language <asr_text>t', undefined, '', 't'],
    ['\n', undefined, '', ''],
    ['lang: x<asr_text>y', undefined, '', 'y'],
  ];
  for (const [raw, forced, language, text] of cases) {
    it(`${JSON.stringify(raw)}${forced ? ` (forced ${forced})` : ''}`, () => {
      expect(parseAsrOutput(raw, forced)).toEqual({ language, text });
    });
  }
});

describe('detectAndFixRepetitions (values from the official function)', () => {
  const cases: [string, string][] = [
    ['a'.repeat(25), 'a'],
    ['a'.repeat(20), 'a'.repeat(20)],
    ['ab'.repeat(25), 'ab'],
    [`hello ${'ha'.repeat(30)}end`, 'hello haend'],
    ['你好'.repeat(25), '你好'],
    [`x${'abc'.repeat(19)}${'y'.repeat(21)}z`, `x${'abc'.repeat(19)}yz`],
    ['no no '.repeat(22), 'no '],
    [`${'the cat sat '.repeat(21)}.`, 'the cat sat .'],
    ['aaaaabbbbb'.repeat(5), 'aaaaabbbbb'.repeat(5)],
  ];
  for (const [input, output] of cases) {
    it(JSON.stringify(input.slice(0, 24)), () => expect(detectAndFixRepetitions(input)).toBe(output));
  }
});

describe('endsInRepeatedCycle', () => {
  it('fires on a short cycle repeated minRepeats times at the tail only', () => {
    const cycle = [5, 6, 7];
    const looped = [1, 2, 3, ...Array.from({ length: 20 }, () => cycle).flat()];
    expect(endsInRepeatedCycle(looped)).toBe(true);
    expect(endsInRepeatedCycle(looped.slice(0, -1))).toBe(false);
    expect(endsInRepeatedCycle([...looped, 9])).toBe(false);
    expect(endsInRepeatedCycle(new Array(20).fill(4))).toBe(true);
    expect(endsInRepeatedCycle(new Array(19).fill(4))).toBe(false);
    expect(endsInRepeatedCycle(new Array(6).fill(4), { minRepeats: 3 })).toBe(true);
    const long = Array.from({ length: 200 }, (_, i) => i % 9); // cycle of 9 > maxCycle 8
    expect(endsInRepeatedCycle(long)).toBe(false);
  });
});
