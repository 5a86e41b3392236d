import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { dimsFromConfig, readCheckpointConfig, type ModelDims } from '../checkpoint/config.js';
import { openSafetensors } from '../checkpoint/safetensors.js';
import {
  loadReferenceWeights, ReferenceDecoder, referenceEncoder, referenceGreedyDecode, type PrefillOptions, type WeightLookup,
} from '../fixtures/reference/index.js';
import { tinyCheckpointDir, tinyModelDir } from '../fixtures/test-support.js';
import { loadAudio } from './audio.js';
import { audioTokenCount, greedyDecode, runEncoder, transcribeFile, transcribeSamples } from './decode.js';
import { logMelSpectrogram } from './mel.js';
import { buildPrompt, endsInRepeatedCycle } from './prompt.js';
import { AsrModel, resolveModelFiles } from './session.js';
import { encodeWav } from './wav-writer.js';

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const MAX_NEW = 8;

let model: AsrModel;
let weights: WeightLookup;
let dims: ModelDims;
let scratch: string;

beforeAll(async () => {
  const ckpt = await tinyCheckpointDir();
  dims = dimsFromConfig(await readCheckpointConfig(ckpt));
  const src = await openSafetensors(ckpt);
  try { weights = await loadReferenceWeights(src); } finally { await src.close(); }
  model = await AsrModel.load(await tinyModelDir(), { threads: 1 });
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-decode-'));
});
afterAll(async () => {
  await model?.release();
  await rm(scratch, { recursive: true, force: true });
});

/** The reference decoder, recording the logits row behind every greedy choice. */
class RecordingDecoder extends ReferenceDecoder {
  readonly logits: Float64Array[] = [];
  override prefill(ids: readonly number[], pos: readonly number[], audio: Float64Array, offset: number, o?: PrefillOptions): { logits: Float64Array } {
    const out = super.prefill(ids, pos, audio, offset, o);
    this.logits.push(out.logits);
    return out;
  }
  override step(embedding: Float64Array, position: number): { logits: Float64Array } {
    const out = super.step(embedding, position);
    this.logits.push(out.logits);
    return out;
  }
}

/** The float64 reference on the same mel: encoder, the same prompt, referenceGreedyDecode. */
function referenceRun(mel: { data: Float32Array; frames: number }, opts: { language?: string; context?: string } = {}): { tokens: number[]; logits: Float64Array[] } {
  const { features, tokens } = referenceEncoder(weights, dims, Float64Array.from(mel.data), mel.frames);
  const prompt = buildPrompt(model.tokenizer, { audioTokens: tokens, ...opts });
  const decoder = new RecordingDecoder(weights, dims);
  const run = referenceGreedyDecode(decoder, dims, { promptIds: prompt.ids, audioFeatures: features, maxTokens: MAX_NEW });
  return { tokens: run.tokens, logits: decoder.logits };
}

/** Largest |ours - reference| over a logits row, relative to the row's largest |reference|. */
function relativeError(ours: Float32Array, ref: Float64Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i += 1) { diff = Math.max(diff, Math.abs(ours[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
  return diff / scale;
}

/** Runs our encoder + greedy decode and the reference on the same samples; returns the reference tokens. */
async function expectMatchesReference(samples: Float32Array, opts: { language?: string; context?: string } = {}): Promise<number[]> {
  const logits: Float32Array[] = [];
  const mel = logMelSpectrogram(samples);
  const features = await runEncoder(model, mel);
  const prompt = buildPrompt(model.tokenizer, { audioTokens: features.dims[1], ...opts });
  const ours = await greedyDecode(model, prompt, features, { maxNewTokens: MAX_NEW, onLogits: (_, row) => logits.push(row.slice()) });
  const ref = referenceRun(mel, opts);
  expect(ours.tokens).toEqual(ref.tokens);
  expect(logits.length).toBe(ref.logits.length);
  for (let i = 0; i < logits.length; i += 1) expect(relativeError(logits[i], ref.logits[i]), `step ${i}`).toBeLessThan(1e-4);
  return ref.tokens;
}

describe('transcribe on the tiny model equals the float64 reference', () => {
  // jfk (11 s), 5 s, a 7 s clip whose mel tail is not a whole chunk, and 30 s (several
  // attention windows). The reference costs ~10 s of CPU for 60 s of audio, so the 60 s clip
  // is checked below without it.
  for (const clip of ['jfk.wav', 'notld/5s_dont_worry_about_him.wav', 'notld/7s_theyre_afraid_of_fire.wav', 'notld/30s_i_wont_open_this_door_again.wav']) {
    it(clip, async () => {
      const file = join(AUDIO, clip);
      const result = await transcribeFile(model, file, { maxNewTokens: MAX_NEW });
      const audio = await loadAudio(file);
      const mel = logMelSpectrogram(audio.samples);
      expect(result.melFrames).toBe(mel.frames);
      expect(result.audioTokens).toBe(audioTokenCount(mel.frames));
      expect(result.timings.stepMs.length).toBe(Math.max(0, result.tokens.length - 1));
      expect(result.timings.realTimeFactor).toBeGreaterThan(0);
      // Same tokens as transcribe, and the logits behind each of them, against the reference.
      expect(result.tokens).toEqual(await expectMatchesReference(audio.samples));
    });
  }

  it('runs the 60 s clip (encoder output length from the chunk formula)', async () => {
    const result = await transcribeFile(model, join(AUDIO, 'notld/60s_i_dont_want_anyones_life_on_my_hands.wav'), { maxNewTokens: 2 });
    expect(result.melFrames).toBe(5974);
    expect(result.audioTokens).toBe(13 * 59 + 10);
    expect(result.tokens.length).toBeGreaterThan(0);
  });

  it('with a forced language and a context', async () => {
    const samples = (await loadAudio(join(AUDIO, 'jfk.wav'))).samples.subarray(0, 16000 * 3);
    const opts = { language: 'English', context: 'The quick brown fox' };
    const refTokens = await expectMatchesReference(samples, opts);
    const result = await transcribeSamples(model, samples, { maxNewTokens: MAX_NEW, ...opts });
    expect(result.tokens).toEqual(refTokens);
    expect(result.language).toBe('English');
  });

  it('decoder graphs alone match the reference given the same audio features', async () => {
    const mel = logMelSpectrogram((await loadAudio(join(AUDIO, 'notld/5s_were_better_off_up_here.wav'))).samples);
    const { features, tokens } = referenceEncoder(weights, dims, Float64Array.from(mel.data), mel.frames);
    const prompt = buildPrompt(model.tokenizer, { audioTokens: tokens });
    const tensor = new ort.Tensor('float32', Float32Array.from(features), [1, tokens, dims.text.hidden]);
    const ours = await greedyDecode(model, prompt, tensor, { maxNewTokens: 12 });
    const ref = referenceGreedyDecode(weights, dims, { promptIds: prompt.ids, audioFeatures: features, maxTokens: 12 });
    expect(ours.tokens).toEqual(ref.tokens);
    expect(ours.stoppedAtEos).toBe(ref.stoppedAtEos);
  });
});

describe('greedyDecode details', () => {
  it('teacher forcing reproduces the free-running logits', async () => {
    const samples = (await loadAudio(join(AUDIO, 'jfk.wav'))).samples.subarray(0, 16000 * 2);
    const mel = logMelSpectrogram(samples);
      const features = await runEncoder(model, mel);
    const prompt = buildPrompt(model.tokenizer, { audioTokens: features.dims[1] });
    const free: Float32Array[] = [];
    const run = await greedyDecode(model, prompt, features, { maxNewTokens: 5, onLogits: (_, l) => free.push(l.slice()) });
    const forced: Float32Array[] = [];
    await greedyDecode(model, prompt, features, { maxNewTokens: 5, forcedTokens: run.tokens, onLogits: (_, l) => forced.push(l.slice()) });
    expect(forced.length).toBe(run.tokens.length);
    for (let i = 0; i < forced.length; i += 1) expect(Array.from(forced[i])).toEqual(Array.from(free[i]));
  });

  it('embedding rows come from embed_tokens.bin (float16 of the checkpoint rows)', async () => {
    const embed = weights('thinker.model.embed_tokens.weight');
    for (const id of [0, 198, 151643, 151935]) {
      const row = await model.embeddings.row(id);
      for (let i = 0; i < dims.text.hidden; i += 1) {
        const want = embed[id * dims.text.hidden + i];
        expect(Math.abs(row[i] - want)).toBeLessThanOrEqual(Math.abs(want) * 2 ** -11 + 1e-7);
      }
    }
    await expect(model.embeddings.row(151936)).rejects.toThrow(/outside/);
  });
});

describe('repetition guard', () => {
  it('stops at the first prefix that ends in a repeated short cycle, and only then', async () => {
    const file = join(AUDIO, 'jfk.wav');
    const free = await transcribeFile(model, file, { maxNewTokens: 45, repetitionGuard: false });
    const guarded = await transcribeFile(model, file, { maxNewTokens: 45 });
    let stop = -1;
    for (let k = 1; k < free.tokens.length && stop < 0; k += 1) if (endsInRepeatedCycle(free.tokens.slice(0, k))) stop = k;
    if (stop < 0) {
      expect(guarded.tokens).toEqual(free.tokens);
    } else {
      expect(guarded.tokens).toEqual(free.tokens.slice(0, stop));
      expect(guarded.stopReason).toBe('repetition');
      // The collapsed text equals what the official clean-up makes of the unguarded run.
      expect(guarded.text).toBe(free.text);
    }
  });
});

describe('model directory loading', () => {
  it('picks suffixed variant files; only the encoder falls back to the float file', async () => {
    const dir = join(scratch, 'variants');
    await mkdir(dir);
    for (const f of ['encoder.onnx', 'decoder_init.onnx', 'decoder_init.int4.onnx', 'decoder_step.onnx', 'decoder_step.int4.onnx', 'embed_tokens.bin']) {
      await writeFile(join(dir, f), '');
    }
    const int4 = await resolveModelFiles(dir, 'int4');
    expect(int4.decoderInit).toBe(join(dir, 'decoder_init.int4.onnx'));
    expect(int4.decoderStep).toBe(join(dir, 'decoder_step.int4.onnx'));
    expect(int4.encoder).toBe(join(dir, 'encoder.onnx'));
    expect((await resolveModelFiles(dir, 'fp32')).decoderInit).toBe(join(dir, 'decoder_init.onnx'));
    // A decoder of the variant that is absent is an error naming it, never the float file in its place.
    await rm(join(dir, 'decoder_step.int4.onnx'));
    await expect(resolveModelFiles(dir, 'int4')).rejects.toThrow(/variant int4 has no decoder_step\.int4\.onnx/);
    await expect(resolveModelFiles(dir, 'int8')).rejects.toThrow(/variant int8 has no decoder_init\.int8\.onnx/);
    await rm(join(dir, 'encoder.onnx'));
    await expect(resolveModelFiles(dir, 'fp32')).rejects.toThrow(/encoder\.onnx is missing/);
  });

  it('names the file when the directory is not a model directory', async () => {
    const err = await AsrModel.load(join(scratch, 'missing')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/missing[/\\]config\.json: no such file/);
  });

  it('rejects audio files it cannot read with a one-line error', async () => {
    const bad = join(scratch, 'bad.wav');
    await writeFile(bad, 'not audio at all');
    await expect(transcribeFile(model, bad)).rejects.toThrow(/bad\.wav: not a WAV file/);
    const short = join(scratch, 'short.wav');
    await writeFile(short, encodeWav({ sampleRate: 16000, channels: [new Float64Array(150)], encoding: 'pcm16' }));
    await expect(transcribeFile(model, short)).rejects.toThrow(/short\.wav: audio too short/);
  });
});
