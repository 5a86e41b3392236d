import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import { alignerPromptText, buildAlignerPrompt } from './align-prompt.js';
import { audioTokenCount } from './decode.js';
import { Tokenizer, parseMerges, parseTokenizerConfig, parseVocab } from './tokenizer.js';

const AUDIO_START = 151669;
const AUDIO_END = 151670;
const PAD = 151676;
const TS = 151705;

/** The fixture's Qwen tokenizer plus the aligner's added `<timestamp>` (id 151705). */
async function alignerTokenizer(withTimestamp = true): Promise<Tokenizer> {
  const dir = await tinyCheckpointDir();
  const read = (f: string): Promise<string> => readFile(join(dir, f), 'utf8');
  const added = parseTokenizerConfig(await read('tokenizer_config.json'), 'tokenizer_config.json').added;
  if (withTimestamp) added.push({ id: TS, content: '<timestamp>', special: false, lstrip: false, rstrip: false, normalized: false, singleWord: false });
  return new Tokenizer(parseVocab(await read('vocab.json'), 'vocab.json'), parseMerges(await read('merges.txt'), 'merges.txt'), added, 'fixture');
}

describe('audio token count', () => {
  it('equals ALIGNER.md 13*floor(F/100) + ceil((F mod 100)/8) for every frame count', () => {
    for (let frames = 0; frames <= 3000; frames += 1) {
      const rest = frames % 100;
      expect(audioTokenCount(frames)).toBe(13 * Math.floor(frames / 100) + (rest === 0 ? 0 : Math.ceil(rest / 8)));
    }
  });
});

describe('buildAlignerPrompt', () => {
  let tok: Tokenizer;
  beforeAll(async () => { tok = await alignerTokenizer(); });

  it('is audio start, N pads, audio end, then per word its own BPE ids and two <timestamp>', () => {
    const words = ['The', 'quick', '50minute', "it's"];
    const p = buildAlignerPrompt(tok, words, 3, TS);
    const expected = [AUDIO_START, PAD, PAD, PAD, AUDIO_END, ...words.flatMap((w) => [...tok.encodeOrdinary(w), TS, TS])];
    expect(p.ids).toEqual(expected);
    expect(p.audioOffset).toBe(1);
    expect(p.audioTokens).toBe(3);
    expect(p.timestamps).toBe(8);
    // "The" without a leading space is the real Qwen2 id 785; digits are single tokens.
    expect(p.ids[5]).toBe(785);
    expect(tok.encodeOrdinary('50minute').slice(0, 2)).toEqual([tok.tokenId('5'), tok.tokenId('0')]);
  });

  it('has no spaces between words and no template', () => {
    expect(alignerPromptText(['a', 'b'])).toBe('<|audio_start|><|audio_pad|><|audio_end|>a<timestamp><timestamp>b<timestamp><timestamp>');
    const p = buildAlignerPrompt(tok, ['我', '们'], 0, TS);
    expect(p.ids).toEqual([AUDIO_START, AUDIO_END, ...tok.encodeOrdinary('我'), TS, TS, ...tok.encodeOrdinary('们'), TS, TS]);
  });

  it('refuses no words, a tokenizer without <timestamp>, and a timestamp id the tokenizer disagrees with', async () => {
    expect(() => buildAlignerPrompt(tok, [], 3, TS)).toThrow(UserError);
    expect(() => buildAlignerPrompt(tok, ['a'], 3, 151704)).toThrow(/maps <timestamp> to id 151705, but config\.json says timestamp_token_id 151704/);
    const asrTok = await alignerTokenizer(false);
    expect(() => buildAlignerPrompt(asrTok, ['a'], 3, TS)).toThrow(/tokenizer has no <timestamp> token/);
  });
});
