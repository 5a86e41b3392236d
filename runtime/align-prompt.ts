import { UserError } from '../common/errors.js';
import { AUDIO_PAD } from './prompt.js';
import type { Tokenizer } from './tokenizer.js';

/**
 * The forced aligner's one input sequence (official Qwen3ForceAlignProcessor.encode_timestamp and
 * the processor's pad expansion, shared/ALIGNER.md step 3):
 *
 *   <|audio_start|> N x <|audio_pad|> <|audio_end|> word0 <timestamp><timestamp> word1 <timestamp><timestamp> ...
 *
 * no chat template, no BOS, no spaces between words. The official code builds this as one string
 * and tokenises it; `<timestamp>` and the audio tokens are added tokens, matched whole, so each
 * word is tokenised on its own, which is what encoding the same string here gives.
 */

export const AUDIO_START = '<|audio_start|>';
export const AUDIO_END = '<|audio_end|>';
export const TIMESTAMP = '<timestamp>';

export interface AlignerPrompt {
  ids: number[];
  /** Position of the first <|audio_pad|>. */
  audioOffset: number;
  audioTokens: number;
  /** Number of <timestamp> ids: two per word (start, end). */
  timestamps: number;
}

/** The text the official processor receives before the pad expansion. */
export function alignerPromptText(words: readonly string[]): string {
  const pair = `${TIMESTAMP}${TIMESTAMP}`;
  return `${AUDIO_START}${AUDIO_PAD}${AUDIO_END}${words.join(pair)}${pair}`;
}

function requireToken(tokenizer: Tokenizer, content: string, expected?: number): number {
  const id = tokenizer.tokenId(content);
  if (id === undefined) throw new UserError(`tokenizer has no ${content} token (not a forced-aligner model directory?)`);
  if (expected !== undefined && id !== expected) {
    throw new UserError(`tokenizer maps ${content} to id ${id}, but config.json says timestamp_token_id ${expected}`);
  }
  return id;
}

/**
 * Ids for `words` (already split, see align-words.ts) with `audioTokens` pads. `timestampId` is
 * config.json's timestamp_token_id; the tokenizer must agree with it.
 */
export function buildAlignerPrompt(tokenizer: Tokenizer, words: readonly string[], audioTokens: number, timestampId: number): AlignerPrompt {
  if (words.length === 0) throw new UserError('the transcript has no words to align');
  const padId = requireToken(tokenizer, AUDIO_PAD);
  requireToken(tokenizer, AUDIO_START);
  requireToken(tokenizer, AUDIO_END);
  requireToken(tokenizer, TIMESTAMP, timestampId);
  const ids = tokenizer.encode(alignerPromptText(words));
  const audioOffset = ids.indexOf(padId);
  const timestamps = ids.reduce((n, id) => n + (id === timestampId ? 1 : 0), 0);
  // Words hold only letters, numbers and apostrophes, so they cannot spell an added token.
  if (timestamps !== 2 * words.length || audioOffset !== 1) {
    throw new Error(`aligner prompt: ${timestamps} timestamps for ${words.length} words, pad at ${audioOffset}`);
  }
  const expanded = [...ids.slice(0, audioOffset), ...new Array<number>(audioTokens).fill(padId), ...ids.slice(audioOffset + 1)];
  return { ids: expanded, audioOffset, audioTokens, timestamps };
}
