import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelDims } from '../checkpoint/config.js';
import { openCheckpoint } from '../checkpoint/open-checkpoint.js';
import { sha256 } from '../common/hash.js';
import { Prng } from '../common/prng.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import {
  referenceEncoder, referenceOutputLength, sinusoidPosition, weightLookupFromTable, type WeightLookup,
} from '../fixtures/reference/index.js';
import { buildEncoder, ENCODER_FILE, ENCODER_WEIGHTS_FILE } from './encoder.js';
import { attentionWindowTokens, encoderTokenCount } from './encoder-lengths.js';
import { sinusoidTable } from './encoder-positions.js';
import { decodeModel } from '../common/onnx/index.js';
import { onnx, type ValueInfoProto as IValueInfoProto } from '../common/onnx/index.js';
import { expectClose } from './test-support.js';

/** max |got - want| must stay within `rel` of the reference's scale (max |want|). */

/** A mel [bins, T] (row-major [bin][frame]) uniform in [-1, 1.5], about the real log-mel range. */
function randomMel(rng: Prng, bins: number, frames: number): Float32Array {
  return Float32Array.from({ length: bins * frames }, () => rng.next() * 2.5 - 1);
}

describe('encoder token counts', () => {
  it('match the official _get_feat_extract_output_lengths for every T up to 2000', () => {
    for (let t = 0; t <= 2000; t++) expect(encoderTokenCount(t), `T=${t}`).toBe(referenceOutputLength(t));
    expect(encoderTokenCount(1400)).toBe(182);
    expect(attentionWindowTokens(100, 800)).toBe(104);
  });

  it('the sinusoid table rows equal the position embedding', () => {
    const table = sinusoidTable(13, 64);
    for (let p = 0; p < 13; p++) expectClose(`row ${p}`, table.subarray(p * 64, (p + 1) * 64), sinusoidPosition(p, 64), 1e-6);
  });
});

describe('encoder.onnx on the tiny checkpoint vs the float64 reference', () => {
  let dims: ModelDims;
  let weights: WeightLookup;
  let dir: string;
  let session: ort.InferenceSession;
  const rng = new Prng(20240607);

  beforeAll(async () => {
    const ckpt = await openCheckpoint(await tinyCheckpointDir());
    dir = await mkdtemp(join(tmpdir(), 'qwen3-onnx-encoder-'));
    try {
      dims = ckpt.dims;
      const { files } = await buildEncoder({ tensors: ckpt.tensors, dims, outputDir: dir });
      expect(files).toEqual([ENCODER_FILE, ENCODER_WEIGHTS_FILE]);
      // Only the audio tower: the reference encoder reads nothing else.
      const table = new Map<string, Float64Array>();
      for (const info of ckpt.tensors.list()) {
        if (info.name.startsWith('thinker.audio_tower.')) table.set(info.name, Float64Array.from(await ckpt.tensors.readFloat32(info.name)));
      }
      weights = weightLookupFromTable(table);
    } finally {
      await ckpt.tensors.close();
    }
    session = await ort.InferenceSession.create(join(dir, ENCODER_FILE));
  });

  afterAll(async () => {
    await session?.release();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const run = async (mel: Float32Array, batch: number, frames: number): Promise<ort.Tensor> => {
    const out = await session.run({ mel: new ort.Tensor('float32', mel, [batch, dims.audio.numMelBins, frames]) });
    return out.audio_features;
  };

  // 1 and 60: one short chunk (not padded); 100: exactly one chunk; 997: a padded tail chunk;
  // 800: exactly one full attention window; 1400: 182 tokens over two windows (104 + 78).
  for (const frames of [1, 60, 100, 800, 997, 1400]) {
    it(`T=${frames}: N follows the official formula and features match`, async () => {
      const mel = randomMel(rng, dims.audio.numMelBins, frames);
      const got = await run(mel, 1, frames);
      const want = referenceEncoder(weights, dims, Float64Array.from(mel), frames);
      expect(got.dims).toEqual([1, referenceOutputLength(frames), dims.audio.outputDim]);
      expect(want.tokens).toBe(referenceOutputLength(frames));
      expectClose(`T=${frames}`, got.data as Float32Array, want.features);
    });
  }

  it('a batch of two same-length mels gives each item its own result', async () => {
    const frames = 230;
    const bins = dims.audio.numMelBins;
    const first = randomMel(rng, bins, frames);
    const second = randomMel(rng, bins, frames);
    const both = new Float32Array(2 * bins * frames);
    both.set(first, 0);
    both.set(second, bins * frames);
    const got = await run(both, 2, frames);
    const n = referenceOutputLength(frames);
    expect(got.dims).toEqual([2, n, dims.audio.outputDim]);
    const data = got.data as Float32Array;
    const per = n * dims.audio.outputDim;
    expectClose('item 0', data.subarray(0, per), referenceEncoder(weights, dims, Float64Array.from(first), frames).features);
    expectClose('item 1', data.subarray(per), referenceEncoder(weights, dims, Float64Array.from(second), frames).features);
  });

  it('names nodes by module, keeps every weight external and declares dynamic axes', async () => {
    const model = decodeModel(await readFile(join(dir, ENCODER_FILE)));
    const g = model.graph;
    if (!g) throw new Error('encoder.onnx has no graph');
    const nodes = g.node ?? [];
    const inits = g.initializer ?? [];
    const names = new Set(nodes.map((n) => n.name));
    for (const n of ['/audio/layers.0/attn/q_proj/MatMul', '/audio/layers.2/fc2/Add', '/audio/conv2d1/Conv', '/audio/proj2/MatMul']) {
      expect(names.has(n), n).toBe(true);
    }
    const external = inits.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
    expect(external.map((t) => t.name).sort()).toEqual(
      inits.filter((t) => (t.name ?? '').startsWith('thinker.')).map((t) => t.name).sort(),
    );
    expect(external.length).toBe(7 + 16 * dims.audio.layers + 6);
    for (const t of external) expect((t.externalData ?? []).find((e) => e.key === 'location')?.value).toBe(ENCODER_WEIGHTS_FILE);
    const dimsOf = (v: IValueInfoProto): Array<string | number> =>
      (v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || Number(d.dimValue));
    const inputs = g.input ?? [];
    const outputs = g.output ?? [];
    expect(inputs.map((v) => v.name)).toEqual(['mel']);
    expect(dimsOf(inputs[0])).toEqual(['batch', dims.audio.numMelBins, 'mel_frames']);
    expect(outputs.map((v) => v.name)).toEqual(['audio_features']);
    expect(dimsOf(outputs[0])).toEqual(['batch', 'audio_tokens', dims.audio.outputDim]);
  });

  it('is deterministic: a second build writes identical bytes', async () => {
    const ckpt = await openCheckpoint(await tinyCheckpointDir());
    const again = await mkdtemp(join(tmpdir(), 'qwen3-onnx-encoder-'));
    try {
      await buildEncoder({ tensors: ckpt.tensors, dims, outputDir: again });
      for (const f of [ENCODER_FILE, ENCODER_WEIGHTS_FILE]) {
        expect(sha256(await readFile(join(again, f))), f).toBe(sha256(await readFile(join(dir, f))));
      }
    } finally {
      await ckpt.tensors.close();
      await rm(again, { recursive: true, force: true });
    }
  });
});
