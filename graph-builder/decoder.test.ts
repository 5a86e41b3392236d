import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelDims } from '../checkpoint/config.js';
import { Prng } from '../common/prng.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { ReferenceDecoder, type WeightLookup } from '../fixtures/reference/index.js';
import { expectClose, tinyReferenceWeights } from './test-support.js';

/** max |got - want| must stay within `rel` of the reference's scale (max |want|). */

const i64 = (xs: readonly number[], dims: number[]): ort.Tensor => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), dims);
const f32 = (xs: ArrayLike<number>, dims: number[]): ort.Tensor => new ort.Tensor('float32', Float32Array.from(xs), dims);
const data = (t: ort.Tensor): Float32Array => t.data as Float32Array;

interface Prefill { logits: ort.Tensor; keys: ort.Tensor; values: ort.Tensor }

describe('decoder graphs on the tiny checkpoint vs the float64 reference', () => {
  let dims: ModelDims;
  let weights: WeightLookup;
  let init: ort.InferenceSession;
  let step: ort.InferenceSession;
  let allLogitsInit: ort.InferenceSession;
  const rng = new Prng(1234);
  const S = 12;
  const A = 4;
  const OFFSET = 3;
  let ids: number[];
  let audio: Float64Array;

  beforeAll(async () => {
    ({ dims, weights } = await tinyReferenceWeights());
    const dir = await tinyModelDir();
    init = await ort.InferenceSession.create(join(dir, 'decoder_init.onnx'));
    step = await ort.InferenceSession.create(join(dir, 'decoder_step.onnx'));
    allLogitsInit = await ort.InferenceSession.create(join(await tinyModelDir({ allLogits: true }), 'decoder_init.onnx'));
    ids = Array.from({ length: S + 40 }, () => rng.nextU32() % dims.text.vocab);
    audio = Float64Array.from({ length: A * dims.text.hidden }, () => Math.fround(rng.normal() * 0.5));
  });

  const runInit = async (session: ort.InferenceSession, n: number, a = A): Promise<Prefill> => {
    const h = dims.text.hidden;
    const out = await session.run({
      input_ids: i64(ids.slice(0, n), [1, n]),
      position_ids: i64(Array.from({ length: n }, (_, i) => i), [1, n]),
      audio_features: f32(audio.subarray(0, a * h), [1, a, h]),
      audio_offset: i64([OFFSET], [1]),
    });
    return { logits: out.logits, keys: out.present_keys, values: out.present_values };
  };

  const runStep = async (embedding: ArrayLike<number>, position: number, past: Prefill): Promise<Prefill> => {
    const out = await step.run({
      input_embeds: f32(embedding, [1, 1, dims.text.hidden]),
      position_ids: i64([position], [1, 1]),
      past_keys: past.keys,
      past_values: past.values,
    });
    return { logits: out.logits, keys: out.present_keys, values: out.present_values };
  };

  it('prefill: last-position logits and stacked KV caches match the reference', async () => {
    const t = dims.text;
    const ref = new ReferenceDecoder(weights, dims);
    const want = ref.prefill(ids.slice(0, S), Array.from({ length: S }, (_, i) => i), audio, OFFSET, { lastOnly: true });
    const got = await runInit(init, S);
    expect(got.logits.dims).toEqual([1, 1, t.vocab]);
    expect(got.keys.dims).toEqual([t.layers, 1, t.kvHeads, S, t.headDim]);
    expect(got.values.dims).toEqual([t.layers, 1, t.kvHeads, S, t.headDim]);
    expectClose('prefill logits', data(got.logits), want.logits);
    expectClose('present_keys', data(got.keys), ref.stackedKeys());
    expectClose('present_values', data(got.values), ref.stackedValues());
  });

  it('prefill without audio rows (A = 0) matches the reference', async () => {
    const ref = new ReferenceDecoder(weights, dims);
    const want = ref.prefill(ids.slice(0, S), Array.from({ length: S }, (_, i) => i), new Float64Array(0), OFFSET, { lastOnly: true });
    const got = await runInit(init, S, 0);
    expectClose('prefill logits (no audio)', data(got.logits), want.logits);
  });

  it('--all-logits: decoder_init returns [1,S,V] logits for every position', async () => {
    const t = dims.text;
    const ref = new ReferenceDecoder(weights, dims);
    const want = ref.prefill(ids.slice(0, S), Array.from({ length: S }, (_, i) => i), audio, OFFSET);
    const got = await runInit(allLogitsInit, S);
    expect(got.logits.dims).toEqual([1, S, t.vocab]);
    expectClose('all logits', data(got.logits), want.logits);
  });

  it('step: logits and grown caches match the reference', async () => {
    const t = dims.text;
    const ref = new ReferenceDecoder(weights, dims);
    ref.prefill(ids.slice(0, S), Array.from({ length: S }, (_, i) => i), audio, OFFSET, { lastOnly: true });
    const row = ref.embedRow(ids[S]);
    const want = ref.step(row, S);
    const got = await runStep(row, S, await runInit(init, S));
    expect(got.logits.dims).toEqual([1, 1, t.vocab]);
    expect(got.keys.dims).toEqual([t.layers, 1, t.kvHeads, S + 1, t.headDim]);
    expectClose('step logits', data(got.logits), want.logits);
    expectClose('step present_keys', data(got.keys), ref.stackedKeys());
    expectClose('step present_values', data(got.values), ref.stackedValues());
  });

  it('step on an empty cache (past length 0) matches the reference', async () => {
    const t = dims.text;
    const ref = new ReferenceDecoder(weights, dims);
    const row = ref.embedRow(ids[0]);
    const want = ref.step(row, 0);
    const empty = f32([], [t.layers, 1, t.kvHeads, 0, t.headDim]);
    const got = await runStep(row, 0, { logits: empty, keys: empty, values: empty });
    expect(got.keys.dims).toEqual([t.layers, 1, t.kvHeads, 1, t.headDim]);
    expectClose('step logits (past 0)', data(got.logits), want.logits);
    expectClose('step present_keys (past 0)', data(got.keys), ref.stackedKeys());
    expectClose('step present_values (past 0)', data(got.values), ref.stackedValues());
  });

  it('prefill of S tokens then k steps equals a prefill of S+k tokens', async () => {
    const k = 3;
    const ref = new ReferenceDecoder(weights, dims);
    let state = await runInit(init, S);
    for (let j = 0; j < k; j++) state = await runStep(ref.embedRow(ids[S + j]), S + j, state);
    const whole = await runInit(init, S + k);
    expectClose('logits', data(state.logits), data(whole.logits), 1e-5);
    expectClose('keys', data(state.keys), data(whole.keys), 1e-5);
    expectClose('values', data(state.values), data(whole.values), 1e-5);
  });

  it('20 teacher-forced steps agree with the reference at every step', async () => {
    const ref = new ReferenceDecoder(weights, dims);
    ref.prefill(ids.slice(0, S), Array.from({ length: S }, (_, i) => i), audio, OFFSET, { lastOnly: true });
    let state = await runInit(init, S);
    for (let j = 0; j < 20; j++) {
      const row = ref.embedRow(ids[S + j]);
      const want = ref.step(row, S + j);
      state = await runStep(row, S + j, state);
      expectClose(`step ${j} logits`, data(state.logits), want.logits);
    }
    expectClose('keys after 20 steps', data(state.keys), ref.stackedKeys());
  });
});
