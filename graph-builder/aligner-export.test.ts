import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ModelDims } from '../checkpoint/config.js';
import { openCheckpoint } from '../checkpoint/open-checkpoint.js';
import { UserError } from '../common/errors.js';
import { Prng } from '../common/prng.js';
import { sha256File } from '../common/hash.js';
import { loadReferenceWeights, referenceEncoder, referenceOutputLength, type WeightLookup } from '../fixtures/reference/index.js';
import { referenceAlignerDecode } from '../fixtures/reference/aligner.js';
import { tinyAlignerCheckpointDir, tinyAlignerModelDir, tinyModelDir } from '../fixtures/test-support.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { modelDirKind } from '../model-dir/aligner.js';
import { exportModel } from './export.js';
import { expectClose } from './test-support.js';

/**
 * The tiny forced aligner exported (aligner-tiny preset) against the float64 reference
 * (fixtures/reference/aligner.ts): the timestamp logits at every `<timestamp>` position within
 * 1e-4 of their scale and the same argmax, end to end from the mel.
 */

const AUDIO_START = 151669;
const AUDIO_PAD = 151676;
const AUDIO_END = 151670;
const TIMESTAMP = 151705;

const i64 = (xs: readonly number[]): ort.Tensor => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), [1, xs.length]);

/** The aligner prompt (shared/ALIGNER.md step 3) over `words` random words of 1-3 tokens. */
function alignerIds(rng: Prng, audioTokens: number, words: number): number[] {
  const ids = [AUDIO_START, ...Array.from({ length: audioTokens }, () => AUDIO_PAD), AUDIO_END];
  for (let w = 0; w < words; w++) {
    const n = 1 + (rng.nextU32() % 3);
    for (let k = 0; k < n; k++) ids.push(rng.nextU32() % 151643);
    ids.push(TIMESTAMP, TIMESTAMP);
  }
  return ids;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'q3o-aligner-export-'));
  try { await fn(dir); } finally { await rm(dir, { recursive: true, force: true }); }
}

function randomMel(rng: Prng, bins: number, frames: number): Float32Array {
  return Float32Array.from({ length: bins * frames }, () => rng.next() * 2.5 - 1);
}

describe('aligner model directory (tiny) vs the float64 reference', () => {
  let dims: ModelDims;
  let weights: WeightLookup;
  let dir: string;
  let encoder: ort.InferenceSession;
  let decoder: ort.InferenceSession;

  beforeAll(async () => {
    const ckpt = await openCheckpoint(await tinyAlignerCheckpointDir());
    try {
      dims = ckpt.dims;
      weights = await loadReferenceWeights(ckpt.tensors);
    } finally {
      await ckpt.tensors.close();
    }
    dir = await tinyAlignerModelDir();
    encoder = await ort.InferenceSession.create(join(dir, 'encoder.onnx'));
    decoder = await ort.InferenceSession.create(join(dir, 'aligner_decoder.onnx'));
  });

  it('declares the interface: input_ids + audio_features -> timestamp_logits [1,K,5000] + timestamp_classes [1,K]', () => {
    expect(decoder.inputNames).toEqual(['input_ids', 'audio_features']);
    expect(decoder.outputNames).toEqual(['timestamp_logits', 'timestamp_classes']);
    expect(encoder.inputNames).toEqual(['mel']);
    expect(encoder.outputNames).toEqual(['audio_features']);
  });

  for (const [frames, words] of [[250, 6], [97, 3], [430, 9]] as const) {
    it(`matches end to end from the mel: ${frames} frames, ${words} words (logits within 1e-4 of scale, same argmax)`, async () => {
      const rng = new Prng(frames * 31 + words);
      const mel = randomMel(rng, dims.audio.numMelBins, frames);
      const n = referenceOutputLength(frames);
      const ids = alignerIds(rng, n, words);
      const audio = (await encoder.run({ mel: new ort.Tensor('float32', mel, [1, dims.audio.numMelBins, frames]) })).audio_features;
      expect(audio.dims).toEqual([1, n, dims.text.hidden]);
      const out = await decoder.run({ input_ids: i64(ids), audio_features: audio });
      const k = 2 * words;
      expect(out.timestamp_logits.dims).toEqual([1, k, 5000]);
      expect(out.timestamp_classes.dims).toEqual([1, k]);

      const { features } = referenceEncoder(weights, dims, Float64Array.from(mel), frames);
      const want = referenceAlignerDecode(weights, dims, ids, features);
      expectClose('timestamp_logits', out.timestamp_logits.data as Float32Array, want.classLogits);
      const classes = Array.from(out.timestamp_classes.data as BigInt64Array, Number);
      expect(classes).toEqual(want.classes);
      // The fixture is built so the classes vary (presets.ts embedGain): not one class everywhere.
      expect(new Set(classes).size, `classes ${classes.join(',')}`).toBeGreaterThanOrEqual(Math.min(3, k));
    });
  }

  it('writes pad rows in order (masked_scatter): swapping two feature rows changes the logits, the same features give the same', async () => {
    const rng = new Prng(99);
    const n = 6;
    const ids = alignerIds(rng, n, 4);
    const h = dims.text.hidden;
    const feats = Float64Array.from({ length: n * h }, () => Math.fround(rng.normal()));
    const run = async (f: Float64Array) => (await decoder.run({ input_ids: i64(ids), audio_features: new ort.Tensor('float32', Float32Array.from(f), [1, n, h]) }));
    const out = await run(feats);
    const want = referenceAlignerDecode(weights, dims, ids, feats);
    expectClose('timestamp_logits', out.timestamp_logits.data as Float32Array, want.classLogits);
    const swapped = Float64Array.from(feats);
    swapped.set(feats.subarray(0, h), h);
    swapped.set(feats.subarray(h, 2 * h), 0);
    const other = await run(swapped);
    expectClose('swapped rows', other.timestamp_logits.data as Float32Array, referenceAlignerDecode(weights, dims, ids, swapped).classLogits);
    expect(Array.from(other.timestamp_logits.data as Float32Array)).not.toEqual(Array.from(out.timestamp_logits.data as Float32Array));
  });

  it('writes config.json with model_kind, the timestamp token, the 80 ms class width and classify_num', async () => {
    const cfg = OutputConfigSchema.parse(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')));
    expect(cfg).toMatchObject({ model_kind: 'forced_aligner', timestamp_token_id: 151705, timestamp_segment_ms: 80, classify_num: 5000 });
    expect(cfg.decoder).toMatchObject({ vocab_size: 152064, hidden_size: 96, num_layers: 2, tie_word_embeddings: false });
    expect(cfg.encoder).toMatchObject({ num_layers: 2, hidden_size: 64, output_dim: 96 });
    expect(await modelDirKind(dir)).toBe('forced_aligner');
    const names = (await readdir(dir)).sort();
    expect(names.filter((f) => /\.(onnx|data|bin)$/.test(f))).toEqual(['aligner_decoder.onnx', 'aligner_weights.data', 'encoder.onnx', 'encoder_weights.data']);
    const vocab = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as { added_tokens_decoder: Record<string, { content: string }> };
    expect(vocab.added_tokens_decoder['151705'].content).toBe('<timestamp>');
  });

  it('the -hf checkpoint exports the same bytes', async () => {
    const hf = await tinyAlignerModelDir({ format: 'hf' });
    for (const f of ['aligner_decoder.onnx', 'aligner_weights.data', 'encoder.onnx', 'encoder_weights.data', 'config.json']) {
      expect(await sha256File(join(hf, f)), f).toBe(await sha256File(join(dir, f)));
    }
  });

  it('is byte-identical when exported again, over the old directory with --overwrite (aligner files are the tool\'s)', async () => {
    await withTempDir(async (tmp) => {
      const out = join(tmp, 'again');
      await exportModel({ model: await tinyAlignerCheckpointDir(), output: out });
      await exportModel({ model: await tinyAlignerCheckpointDir(), output: out, overwrite: true });
      for (const f of ['aligner_decoder.onnx', 'aligner_weights.data', 'encoder.onnx', 'encoder_weights.data', 'config.json']) {
        expect(await sha256File(join(out, f)), f).toBe(await sha256File(join(dir, f)));
      }
    });
  });

  it('an ASR checkpoint is not treated as an aligner (no model_kind, no aligner graph)', async () => {
    const asr = await tinyModelDir();
    expect(await modelDirKind(asr)).toBe('asr');
    const cfg = JSON.parse(await readFile(join(asr, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.model_kind).toBeUndefined();
    expect((await readdir(asr)).some((f) => f.startsWith('aligner'))).toBe(false);
  });

  it('refuses export options an aligner has no use for, naming the flag, and writes nothing', async () => {
    await withTempDir(async (tmp) => {
      const model = await tinyAlignerCheckpointDir();
      for (const [opts, flag] of [[{ layout: 'sherpa-onnx' as const }, '--layout sherpa-onnx'], [{ attention: 'fused' as const }, '--attention fused'], [{ allLogits: true }, '--all-logits']] as const) {
        const out = join(tmp, 'x');
        const err = await exportModel({ model, output: out, ...opts }).then(() => undefined, (e: unknown) => e as Error);
        expect(err).toBeInstanceOf(UserError);
        expect(err?.message.startsWith(`${flag}: the checkpoint is a forced aligner`), err?.message).toBe(true);
        expect(await readdir(tmp)).toEqual([]);
      }
    });
  });
});
