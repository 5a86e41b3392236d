import { beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelDims } from '../checkpoint/config.js';
import { Prng } from '../common/prng.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { ReferenceDecoder, type WeightLookup } from '../fixtures/reference/index.js';
import { decodeModel } from '../common/onnx/index.js';
import type { ModelProto } from '../common/onnx/index.js';
import { expectClose, tinyReferenceWeights } from './test-support.js';

/*
 * export --attention fused: decoder graphs on com.microsoft GroupQueryAttention + RotaryEmbedding,
 * checked against the independent float64 reference and against the standard-op graphs.
 */

const i64 = (xs: readonly number[], dims: number[]): ort.Tensor => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), dims);
const f32 = (xs: ArrayLike<number>, dims: number[]): ort.Tensor => new ort.Tensor('float32', Float32Array.from(xs), dims);
const data = (t: ort.Tensor): Float32Array => t.data as Float32Array;

interface State { logits: ort.Tensor; keys: ort.Tensor; values: ort.Tensor }

/** Batch entries [L,1,KV,T,D] (as flat arrays) stacked into one [L,B,KV,T,D] cache. */
function stackBatch(parts: ArrayLike<number>[], layers: number): Float32Array {
  const per = parts[0].length / layers;
  const out = new Float32Array(parts[0].length * parts.length);
  for (let l = 0; l < layers; l++) {
    parts.forEach((p, b) => out.set(Array.from(p).slice(l * per, (l + 1) * per), (l * parts.length + b) * per));
  }
  return out;
}

/** Batch entry `b` of a stacked [L,B,...] cache (or [B,...] logits with layers = 1). */
function batchEntry(x: Float32Array, layers: number, batch: number, b: number): Float32Array {
  const per = x.length / layers / batch;
  const out = new Float32Array(per * layers);
  for (let l = 0; l < layers; l++) out.set(x.subarray((l * batch + b) * per, (l * batch + b + 1) * per), l * per);
  return out;
}

/** Rows [from, to) along the sequence axis of a [L,B,KV,T,D] cache. */
function seqRows(x: Float32Array, dims: readonly number[], from: number, to: number): Float32Array {
  const [l, b, kv, t, d] = dims;
  const out = new Float32Array(l * b * kv * (to - from) * d);
  let o = 0;
  for (let blk = 0; blk < l * b * kv; blk++) {
    out.set(x.subarray((blk * t + from) * d, (blk * t + to) * d), o);
    o += (to - from) * d;
  }
  return out;
}

describe('decoder graphs with --attention fused on the tiny checkpoint', () => {
  let dims: ModelDims;
  let weights: WeightLookup;
  let plainInit: ort.InferenceSession;
  let fusedInit: ort.InferenceSession;
  let plainStep: ort.InferenceSession;
  let fusedStep: ort.InferenceSession;
  let plainStepModel: ModelProto;
  let fusedInitModel: ModelProto;
  let fusedStepModel: ModelProto;
  const rng = new Prng(4321);
  const A = 4;
  const OFFSET = 3;
  let ids: number[][];
  let audio: Float64Array;

  beforeAll(async () => {
    ({ dims, weights } = await tinyReferenceWeights());
    const plain = await tinyModelDir();
    const fused = await tinyModelDir({ attention: 'fused' });
    plainInit = await ort.InferenceSession.create(join(plain, 'decoder_init.onnx'));
    plainStep = await ort.InferenceSession.create(join(plain, 'decoder_step.onnx'));
    fusedInit = await ort.InferenceSession.create(join(fused, 'decoder_init.onnx'));
    fusedStep = await ort.InferenceSession.create(join(fused, 'decoder_step.onnx'));
    plainStepModel = decodeModel(await readFile(join(plain, 'decoder_step.onnx')));
    fusedInitModel = decodeModel(await readFile(join(fused, 'decoder_init.onnx')));
    fusedStepModel = decodeModel(await readFile(join(fused, 'decoder_step.onnx')));
    ids = [0, 1].map(() => Array.from({ length: 60 }, () => rng.nextU32() % dims.text.vocab));
    audio = Float64Array.from({ length: 2 * A * dims.text.hidden }, () => Math.fround(rng.normal() * 0.5));
  }, 300_000);

  const audioOf = (b: number, a = A): Float64Array => audio.subarray(b * A * dims.text.hidden, (b * A + a) * dims.text.hidden);

  /** decoder_init on batch entries `rows` of `ids` (first n tokens each), a audio rows per entry. */
  const runInit = async (session: ort.InferenceSession, n: number, rows: number[] = [0], a = A): Promise<State> => {
    const h = dims.text.hidden;
    const out = await session.run({
      input_ids: i64(rows.flatMap((r) => ids[r].slice(0, n)), [rows.length, n]),
      position_ids: i64(rows.flatMap(() => Array.from({ length: n }, (_, i) => i)), [rows.length, n]),
      audio_features: f32(rows.flatMap((r) => Array.from(audioOf(r, a))), [rows.length, a, h]),
      audio_offset: i64([OFFSET], [1]),
    });
    return { logits: out.logits, keys: out.present_keys, values: out.present_values };
  };

  const runStep = async (
    session: ort.InferenceSession, embeddings: ArrayLike<number>[], positions: number[], past: { keys: ort.Tensor; values: ort.Tensor },
  ): Promise<State> => {
    const out = await session.run({
      input_embeds: f32(embeddings.flatMap((e) => Array.from(e)), [embeddings.length, 1, dims.text.hidden]),
      position_ids: i64(positions, [positions.length, 1]),
      past_keys: past.keys,
      past_values: past.values,
    });
    return { logits: out.logits, keys: out.present_keys, values: out.present_values };
  };

  const emptyCache = (batch: number): { keys: ort.Tensor; values: ort.Tensor } => {
    const t = dims.text;
    const shape = [t.layers, batch, t.kvHeads, 0, t.headDim];
    return { keys: f32([], shape), values: f32([], shape) };
  };

  it('keeps the contract I/O and uses one GroupQueryAttention and two RotaryEmbedding per layer', () => {
    const t = dims.text;
    const io = (m: ModelProto): unknown => ['input', 'output'].map((k) => (m.graph?.[k as 'input' | 'output'] ?? []).map((v) => ({
      name: v.name, type: v.type?.tensorType?.elemType,
      dims: v.type?.tensorType?.shape?.dim?.map((d) => d.dimParam || Number(d.dimValue)),
    })));
    expect(io(fusedStepModel)).toEqual(io(plainStepModel));
    for (const m of [fusedInitModel, fusedStepModel]) {
      expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17], ['com.microsoft', 1]]);
      const nodes = m.graph?.node ?? [];
      const count = (op: string): number => nodes.filter((n) => n.opType === op).length;
      expect(count('GroupQueryAttention')).toBe(t.layers);
      expect(count('RotaryEmbedding')).toBe(2 * t.layers);
      // No standard-op attention left: no softmax, no causal mask, no repeat_kv (the one Expand spreads seqlens_k over the batch).
      expect([count('Softmax'), count('Where')]).toEqual([0, 0]);
      expect(nodes.filter((n) => n.opType === 'Expand').map((n) => n.name)).toEqual(['/model/attn_lengths/Expand']);
      for (const n of nodes.filter((x) => x.domain === 'com.microsoft')) expect(n.name).toMatch(/^\/model\/layers\.\d+\/attn\//);
      expect(nodes.map((n) => n.name)).toContain('/model/layers.0/attn/GroupQueryAttention');
      expect(nodes.map((n) => n.name)).toContain('/model/layers.0/attn/q_rotary/RotaryEmbedding');
    }
  });

  it('prefill matches the reference (S = 12 with audio, S = 1)', async () => {
    const t = dims.text;
    for (const [s, a] of [[12, A], [1, 0]]) {
      const ref = new ReferenceDecoder(weights, dims);
      const want = ref.prefill(ids[0].slice(0, s), Array.from({ length: s }, (_, i) => i), audioOf(0, a), OFFSET, { lastOnly: true });
      const got = await runInit(fusedInit, s, [0], a);
      expect(got.logits.dims).toEqual([1, 1, t.vocab]);
      expect(got.keys.dims).toEqual([t.layers, 1, t.kvHeads, s, t.headDim]);
      expectClose(`S=${s} logits`, data(got.logits), want.logits);
      expectClose(`S=${s} present_keys`, data(got.keys), ref.stackedKeys());
      expectClose(`S=${s} present_values`, data(got.values), ref.stackedValues());
    }
  });

  it('step matches the reference at past lengths 0, 1, 12 and 40; presents are the past plus the new row', async () => {
    const t = dims.text;
    for (const p of [0, 1, 12, 40]) {
      const ref = new ReferenceDecoder(weights, dims);
      // The past comes from the standard-op prefill (tested in decoder.test.ts), so this checks the step alone.
      const a = p >= OFFSET + A ? A : 0;
      const past = p === 0 ? emptyCache(1) : await runInit(plainInit, p, [0], a);
      if (p > 0) ref.prefill(ids[0].slice(0, p), Array.from({ length: p }, (_, i) => i), audioOf(0, a), OFFSET, { lastOnly: true });
      const row = ref.embedRow(ids[0][p]);
      const want = ref.step(row, p);
      const got = await runStep(fusedStep, [row], [p], past);
      const cacheDims = [t.layers, 1, t.kvHeads, p + 1, t.headDim];
      expect(got.logits.dims).toEqual([1, 1, t.vocab]);
      expect(got.keys.dims).toEqual(cacheDims);
      expect(got.values.dims).toEqual(cacheDims);
      expectClose(`P=${p} step logits`, data(got.logits), want.logits);
      expectClose(`P=${p} present_keys`, data(got.keys), ref.stackedKeys());
      expectClose(`P=${p} present_values`, data(got.values), ref.stackedValues());
      // The cached rows are passed through bit for bit.
      expect(seqRows(data(got.keys), cacheDims, 0, p)).toEqual(data(past.keys));
      expect(seqRows(data(got.values), cacheDims, 0, p)).toEqual(data(past.values));
    }
  });

  it('batch 2: each entry (own tokens, own position) matches its own reference, in prefill and step', async () => {
    const t = dims.text;
    const S = 10;
    const positions = [S, S + 7];
    const refs = [0, 1].map(() => new ReferenceDecoder(weights, dims));
    const wantInit = refs.map((r, b) => r.prefill(ids[b].slice(0, S), Array.from({ length: S }, (_, i) => i), audioOf(b), OFFSET, { lastOnly: true }));
    const init = await runInit(fusedInit, S, [0, 1]);
    expect(init.keys.dims).toEqual([t.layers, 2, t.kvHeads, S, t.headDim]);
    for (const b of [0, 1]) {
      expectClose(`init logits[${b}]`, batchEntry(data(init.logits), 1, 2, b), wantInit[b].logits);
      expectClose(`init keys[${b}]`, batchEntry(data(init.keys), t.layers, 2, b), refs[b].stackedKeys());
    }
    const rows = [0, 1].map((b) => refs[b].embedRow(ids[b][S]));
    const wantStep = refs.map((r, b) => r.step(rows[b], positions[b]));
    const step = await runStep(fusedStep, rows, positions, init);
    expect(step.keys.dims).toEqual([t.layers, 2, t.kvHeads, S + 1, t.headDim]);
    for (const b of [0, 1]) {
      expectClose(`step logits[${b}]`, batchEntry(data(step.logits), 1, 2, b), wantStep[b].logits);
      expectClose(`step keys[${b}]`, batchEntry(data(step.keys), t.layers, 2, b), refs[b].stackedKeys());
      expectClose(`step values[${b}]`, batchEntry(data(step.values), t.layers, 2, b), refs[b].stackedValues());
    }
    // Same batch through the standard-op step.
    const plain = await runStep(plainStep, rows, positions, init);
    expectClose('batch step fused vs plain', data(step.logits), data(plain.logits), 1e-5);
  });

  it('agrees with the standard-op graphs (prefill, then 8 steps each fed its own graph\'s cache)', async () => {
    const S = 14;
    let fused = await runInit(fusedInit, S);
    let plain = await runInit(plainInit, S);
    expectClose('init logits', data(fused.logits), data(plain.logits), 1e-5);
    expectClose('init keys', data(fused.keys), data(plain.keys), 1e-5);
    expectClose('init values', data(fused.values), data(plain.values), 1e-5);
    const ref = new ReferenceDecoder(weights, dims);
    ref.prefill(ids[0].slice(0, S), Array.from({ length: S }, (_, i) => i), audioOf(0), OFFSET, { lastOnly: true });
    for (let j = 0; j < 8; j++) {
      const row = ref.embedRow(ids[0][S + j]);
      const want = ref.step(row, S + j);
      fused = await runStep(fusedStep, [row], [S + j], fused);
      plain = await runStep(plainStep, [row], [S + j], plain);
      expectClose(`step ${j} fused vs plain`, data(fused.logits), data(plain.logits), 1e-5);
      expectClose(`step ${j} fused vs reference`, data(fused.logits), want.logits);
    }
    expectClose('keys after 8 steps', data(fused.keys), data(plain.keys), 1e-5);
    expectClose('values after 8 steps', data(fused.values), data(plain.values), 1e-5);
  });
});
