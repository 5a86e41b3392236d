import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tinyModelDir } from '../fixtures/test-support.js';
import { loadAudio } from './audio.js';
import { audioTokenCount, transcribeSamples } from './decode.js';
import { melFrameCount } from './mel.js';
import { buildPrompt } from './prompt.js';
import { DEFAULT_SEGMENT_SECONDS, joinSegmentTexts, maxSegmentSamples } from './segment.js';
import { AsrModel } from './session.js';

/**
 * Why memory stays linear in the duration, checked without timing anything: whatever the
 * length of the recording, decoder_init (whose attention is quadratic in its input) never
 * sees more than one segment's prompt, and the segments tile the audio.
 */

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const CLIPS = ['notld/119s_theres_supposed_to_be_another_broadcast.wav', 'notld/89s_ill_come_back_down_as_soon_as.wav', 'jfk.wav'];

let model: AsrModel;
let speech: Float32Array;
/** Lengths of input_ids decoder_init was run on. */
let prefills: number[];
beforeAll(async () => {
  model = await AsrModel.load(await tinyModelDir(), { threads: 1 });
  const parts = await Promise.all(CLIPS.map(async (c) => (await loadAudio(join(AUDIO, c))).samples));
  speech = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { speech.set(p, at); at += p.length; }
  const run = model.decoderInit.run.bind(model.decoderInit);
  vi.spyOn(model.decoderInit, 'run').mockImplementation(((feeds: ort.InferenceSession.FeedsType, ...rest: unknown[]) => {
    prefills.push((feeds.input_ids as ort.Tensor).dims[1]);
    return (run as (...a: unknown[]) => Promise<ort.InferenceSession.ReturnType>)(feeds, ...rest);
  }) as typeof model.decoderInit.run);
});
afterAll(async () => { await model.release(); });

/** Longest prompt a segment of nominal length `seconds` can give decoder_init. */
function prefillBound(seconds: number): number {
  const template = buildPrompt(model.tokenizer, { audioTokens: 0 }).ids.length;
  return template + audioTokenCount(melFrameCount(maxSegmentSamples(seconds, 16000)));
}

async function transcribe(samples: Float32Array, maxSegmentSeconds?: number) {
  prefills = [];
  const result = await transcribeSamples(model, samples, { maxNewTokens: 1, maxSegmentSeconds });
  return { result, prefills: [...prefills] };
}

describe('long audio is decoded segment by segment', () => {
  it('220 s of speech: every prefill within the one-segment bound, segments tiling the audio', async () => {
    const { result, prefills: lengths } = await transcribe(speech);
    const bound = prefillBound(DEFAULT_SEGMENT_SECONDS);
    expect(result.audioSeconds).toBeGreaterThan(215);
    expect(result.segments.length).toBeGreaterThanOrEqual(4);
    expect(lengths.length).toBe(result.segments.length);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(bound);
    // The whole recording in one prefill would have been more than three times longer.
    expect(buildPrompt(model.tokenizer, { audioTokens: audioTokenCount(melFrameCount(speech.length)) }).ids.length).toBeGreaterThan(3 * bound);
    let offset = 0;
    for (const [i, s] of result.segments.entries()) {
      expect(s.offsetS).toBeCloseTo(offset, 9);
      expect(s.promptTokens).toBe(lengths[i]);
      expect(s.durationS).toBeLessThanOrEqual(maxSegmentSamples(DEFAULT_SEGMENT_SECONDS, 16000) / 16000);
      offset += s.durationS;
    }
    expect(offset * 16000).toBeCloseTo(speech.length, 6);
    expect(result.text).toBe(joinSegmentTexts(result.segments.map((s) => s.text)));
    expect(result.tokens.length).toBe(result.segments.reduce((n, s) => n + s.tokens, 0));
  });

  it('the bound follows --max-segment-seconds, not the duration', async () => {
    for (const [seconds, max] of [[60, 15], [200, 15], [200, 40]]) {
      const { result, prefills: lengths } = await transcribe(speech.subarray(0, seconds * 16000), max);
      expect(Math.max(...lengths)).toBeLessThanOrEqual(prefillBound(max));
      expect(result.segments.length).toBeGreaterThanOrEqual(Math.ceil(seconds / (max + 5)));
    }
  });

  it('ten minutes of silence: ten prefills of 55 s and one of the 50 s tail', async () => {
    const { result, prefills: lengths } = await transcribe(new Float32Array(600 * 16000));
    expect(result.segments.map((s) => s.durationS)).toEqual([...Array(10).fill(55), 50]);
    expect(lengths.length).toBe(11);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(prefillBound(DEFAULT_SEGMENT_SECONDS));
  });

  it('audio within one segment is decoded whole, exactly as before', async () => {
    const clip = speech.subarray(0, 30 * 16000);
    const { result, prefills: lengths } = await transcribe(clip);
    expect(result.segments.length).toBe(1);
    expect(lengths).toEqual([buildPrompt(model.tokenizer, { audioTokens: audioTokenCount(melFrameCount(clip.length)) }).ids.length]);
  });
});
