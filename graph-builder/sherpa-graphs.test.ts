import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelDims } from '../checkpoint/config.js';
import { decodeModel, type ValueInfoProto } from '../common/onnx/index.js';
import { Prng } from '../common/prng.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import { ReferenceDecoder, referenceEncoder, type WeightLookup } from '../fixtures/reference/index.js';
import { detectLayout, sherpaGraphFileName, SHERPA_TOKENIZER_DIR } from '../model-dir/layout.js';
import { exportModel } from './export.js';
import { sha256 } from '../common/hash.js';
import { oneLineError, runCli } from '../fixtures/hostile-support.js';
import { expectClose, tinyReferenceWeights } from './test-support.js';

/**
 * The sherpa-onnx layout's graphs on the tiny checkpoint against the float64 reference
 * (fixtures/reference/, which shares no code with graph-builder/), driven the way sherpa-onnx
 * drives them (shared/SHERPA-ONNX.md): mel as [1, T, 128], a bool mask sherpa computes itself,
 * full-size zero-filled cache buffers passed whole, deltas copied in by the caller.
 * sherpa-onnx itself runs these files in runtime/sherpa-*.test.ts.
 */

/** sherpa's own valid-token count: 13 per full chunk + f(f(f(r))), f(x) = floor((x - 1) / 2) + 1. */
function sherpaValidTokens(frames: number): number {
  const f = (x: number): number => Math.floor((x - 1) / 2) + 1;
  const r = frames % 100;
  return 13 * Math.floor(frames / 100) + (r > 0 ? f(f(f(r))) : 0);
}

const i64 = (xs: readonly number[], dims: number[]): ort.Tensor => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), dims);
const shapeOf = (v: ValueInfoProto): Array<string | number> =>
  (v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || Number(d.dimValue));

describe('sherpa-onnx layout graphs vs the float64 reference', () => {
  let dims: ModelDims;
  let weights: WeightLookup;
  let dir: string;
  let frontend: ort.InferenceSession;
  let encoder: ort.InferenceSession;
  let decoder: ort.InferenceSession;
  const rng = new Prng(7031);

  beforeAll(async () => {
    ({ dims, weights } = await tinyReferenceWeights());
    const parent = await mkdtemp(join(tmpdir(), 'qwen3-onnx-sherpa-'));
    dir = join(parent, 'model');
    await exportModel({ model: await tinyCheckpointDir(), output: dir, layout: 'sherpa-onnx' });
    frontend = await ort.InferenceSession.create(join(dir, sherpaGraphFileName('conv_frontend')));
    encoder = await ort.InferenceSession.create(join(dir, sherpaGraphFileName('encoder')));
    decoder = await ort.InferenceSession.create(join(dir, sherpaGraphFileName('decoder')));
  }, 120_000);

  afterAll(async () => {
    await Promise.all([frontend?.release(), encoder?.release(), decoder?.release()]);
    if (dir) await rm(join(dir, '..'), { recursive: true, force: true });
  });

  it('writes the files sherpa loads, the tokenizer folder and a config.json that names the layout', async () => {
    const names = (await readdir(dir)).sort();
    for (const f of ['conv_frontend.onnx', 'encoder.onnx', 'decoder.onnx', 'conv_frontend.data', 'encoder.data', 'decoder.data', 'config.json', 'export-record.json']) {
      expect(names, f).toContain(f);
    }
    expect(names).not.toContain('embed_tokens.bin');
    expect((await readdir(join(dir, SHERPA_TOKENIZER_DIR))).sort()).toEqual(['merges.txt', 'tokenizer_config.json', 'vocab.json']);
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).layout).toBe('sherpa-onnx');
    expect(await detectLayout(dir)).toBe('sherpa-onnx');
  });

  it('is deterministic: a second export writes identical bytes', async () => {
    const again = join(dir, '..', 'again');
    await exportModel({ model: await tinyCheckpointDir(), output: again, layout: 'sherpa-onnx' });
    for (const f of ['conv_frontend.onnx', 'conv_frontend.data', 'encoder.onnx', 'encoder.data', 'decoder.onnx', 'decoder.data', 'config.json', 'tokenizer/vocab.json']) {
      expect(sha256(await readFile(join(again, f))), f).toBe(sha256(await readFile(join(dir, f))));
    }
    await rm(again, { recursive: true, force: true });
  }, 60_000);

  it('refuses an unknown layout and fused attention with the sherpa-onnx layout in one line, writing nothing', async () => {
    const out = join(dir, '..', 'refused');
    const bogus = await runCli(['export', '--model', await tinyCheckpointDir(), '--output', out, '--layout', 'tflite']);
    expect(oneLineError(bogus)).toMatch(/--layout tflite: unknown layout \(expected split or sherpa-onnx\)/);
    const fused = await runCli(['export', '--model', await tinyCheckpointDir(), '--output', out, '--layout', 'sherpa-onnx', '--attention', 'fused']);
    expect(oneLineError(fused)).toMatch(/--attention fused: the sherpa-onnx layout/);
    await expect(readdir(out)).rejects.toThrow();
  }, 60_000);

  it('declares the inputs and outputs sherpa binds by position: bool mask, static kv heads and head_dim, dynamic cache length', async () => {
    const io = async (file: string): Promise<{ inputs: ValueInfoProto[]; outputs: ValueInfoProto[] }> => {
      const g = decodeModel(await readFile(join(dir, file))).graph;
      if (!g) throw new Error(`${file} has no graph`);
      return { inputs: g.input ?? [], outputs: g.output ?? [] };
    };
    const t = dims.text;
    const fe = await io('conv_frontend.onnx');
    expect(fe.inputs.length).toBe(1);
    expect(fe.outputs.length).toBe(1);
    expect(shapeOf(fe.inputs[0])).toEqual([1, 'mel_frames', 128]);
    const enc = await io('encoder.onnx');
    expect(enc.inputs.length).toBe(2);
    expect(enc.outputs.length).toBe(1);
    expect(enc.inputs[1].type?.tensorType?.elemType).toBe(9); // BOOL
    const dec = await io('decoder.onnx');
    expect(dec.inputs.length).toBe(4 + 2 * t.layers);
    expect(dec.outputs.length).toBe(1 + 2 * t.layers);
    expect(dec.inputs.slice(0, 4).map((v) => v.name)).toEqual(['input_ids', 'audio_features', 'attention_mask', 'cache_position']);
    expect(dec.inputs.slice(0, 4).map((v) => v.type?.tensorType?.elemType)).toEqual([7, 1, 7, 7]);
    expect(shapeOf(dec.inputs[3])).toEqual(['seq_len']);
    for (let l = 0; l < t.layers; l++) {
      expect(dec.inputs[4 + 2 * l].name).toBe(`past_key_${l}`);
      expect(dec.inputs[5 + 2 * l].name).toBe(`past_value_${l}`);
      expect(shapeOf(dec.inputs[4 + 2 * l])).toEqual([1, 'max_total_len', t.kvHeads, t.headDim]);
      expect(dec.outputs[1 + 2 * l].name).toBe(`key_delta_${l}`);
      expect(dec.outputs[2 + 2 * l].name).toBe(`value_delta_${l}`);
      expect(shapeOf(dec.outputs[1 + 2 * l])).toEqual([1, 'seq_len', t.kvHeads, t.headDim]);
    }
    expect(shapeOf(dec.outputs[0])).toEqual([1, 'seq_len', t.vocab]);
  });

  // 60: a lone short chunk (the official code does not pad it); 100: one full chunk; 997: a padded
  // tail; 1400: 182 tokens over two attention windows.
  for (const frames of [60, 100, 997, 1400]) {
    it(`T=${frames}: conv_frontend + encoder give the reference features and exact-zero padded rows`, async () => {
      const bins = dims.audio.numMelBins;
      const melBinMajor = Float32Array.from({ length: bins * frames }, () => rng.next() * 2.5 - 1);
      const melTimeMajor = new Float32Array(frames * bins);
      for (let b = 0; b < bins; b++) for (let f = 0; f < frames; f++) melTimeMajor[f * bins + b] = melBinMajor[b * frames + f];
      const conv = (await frontend.run({ mel: new ort.Tensor('float32', melTimeMajor, [1, frames, bins]) })).conv_output;
      const rows = 13 * Math.ceil(frames / 100);
      expect(conv.dims).toEqual([1, rows, dims.audio.dModel]);
      const valid = sherpaValidTokens(frames);
      const mask = new ort.Tensor('bool', Uint8Array.from({ length: rows }, (_, i) => (i < valid ? 1 : 0)), [1, rows]);
      const out = (await encoder.run({ conv_output: conv, mask })).audio_features;
      expect(out.dims).toEqual([1, rows, dims.audio.outputDim]);
      const data = out.data as Float32Array;
      const want = referenceEncoder(weights, dims, Float64Array.from(melBinMajor), frames);
      expect(want.tokens).toBe(valid);
      const h = dims.audio.outputDim;
      expectClose(`T=${frames} valid rows`, data.subarray(0, valid * h), want.features);
      for (let i = valid * h; i < data.length; i++) if (data[i] !== 0) throw new Error(`padded row ${Math.floor(i / h)} is not exactly zero`);
    });
  }

  it('decoder: prefill logits at every position and per-call deltas, then steps over stale buffers, match the reference', async () => {
    const t = dims.text;
    const pad = dims.tokens.audio;
    const audioRows = 5;
    const prompt = [151644, 8948, 198, ...Array.from({ length: audioRows }, () => pad), 151670, 151645, 198, 77091];
    const offset = prompt.indexOf(pad);
    const audio = Float64Array.from({ length: audioRows * t.hidden }, () => Math.fround(rng.normal() * 0.5));
    const audioTensor = new ort.Tensor('float32', Float32Array.from(audio), [1, audioRows, t.hidden]);
    const maxLen = 40;
    const kv = t.kvHeads * t.headDim;
    // Rows past the written ones hold garbage, as sherpa's buffers may after earlier calls.
    const buffers = Array.from({ length: 2 * t.layers }, () => Float32Array.from({ length: maxLen * kv }, () => 9));
    const feeds = (ids: number[], start: number): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = {
        input_ids: i64(ids, [1, ids.length]),
        audio_features: audioTensor,
        attention_mask: i64(ids.map(() => 1), [1, ids.length]),
        cache_position: i64(ids.map((_, i) => start + i), [ids.length]),
      };
      for (let l = 0; l < t.layers; l++) {
        f[`past_key_${l}`] = new ort.Tensor('float32', buffers[2 * l], [1, maxLen, t.kvHeads, t.headDim]);
        f[`past_value_${l}`] = new ort.Tensor('float32', buffers[2 * l + 1], [1, maxLen, t.kvHeads, t.headDim]);
      }
      return f;
    };
    const writeDeltas = (out: ort.InferenceSession.OnnxValueMapType, start: number): void => {
      for (let l = 0; l < t.layers; l++) {
        buffers[2 * l].set(out[`key_delta_${l}`].data as Float32Array, start * kv);
        buffers[2 * l + 1].set(out[`value_delta_${l}`].data as Float32Array, start * kv);
      }
    };

    const ref = new ReferenceDecoder(weights, dims);
    const want = ref.prefill(prompt, prompt.map((_, i) => i), audio, offset);
    const out = await decoder.run(feeds(prompt, 0));
    expect(out.logits.dims).toEqual([1, prompt.length, t.vocab]);
    expectClose('prefill logits, every position', out.logits.data as Float32Array, want.logits);
    // Deltas [1, S, kv, D] vs the reference's [kv, S, D].
    const refKeys = ref.keys(0);
    const delta = out.key_delta_0.data as Float32Array;
    const asBuffer = new Float64Array(delta.length);
    for (let s = 0; s < prompt.length; s++) for (let h = 0; h < t.kvHeads; h++) for (let d = 0; d < t.headDim; d++) {
      asBuffer[(s * t.kvHeads + h) * t.headDim + d] = refKeys[(h * prompt.length + s) * t.headDim + d];
    }
    expectClose('key delta of layer 0', delta, asBuffer);
    writeDeltas(out, 0);

    let pos = prompt.length;
    for (const id of [1234, 98765, 42]) {
      const step = await decoder.run(feeds([id], pos));
      expect(step.logits.dims).toEqual([1, 1, t.vocab]);
      expect(step.key_delta_0.dims).toEqual([1, 1, t.kvHeads, t.headDim]);
      expectClose(`step at ${pos}`, step.logits.data as Float32Array, ref.step(ref.embedRow(id), pos).logits);
      writeDeltas(step, pos);
      pos += 1;
    }
  });
});
