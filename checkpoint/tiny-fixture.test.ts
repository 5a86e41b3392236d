import { describe, expect, it } from 'vitest';
import { PRESETS } from '../fixtures/presets.js';
import { tensorPlan } from '../fixtures/tensor-plan.js';
import { tinyCheckpointDir, tinyCheckpointVariantDir } from '../fixtures/test-support.js';
import { EMBED_TOKENS, expectedTensors, LM_HEAD } from './expected-tensors.js';
import { openCheckpoint } from './open-checkpoint.js';

describe('tiny fixture through openCheckpoint', () => {
  it.each(['original', 'hf'] as const)('%s layout: loads with no tensor left over or missing (the tied lm_head stored, as in the real files)', async (format) => {
    const ck = await openCheckpoint(await tinyCheckpointVariantDir({ format }));
    try {
      expect(ck.format).toBe(format);
      expect(ck.report).toEqual({ matched: expectedTensors(ck.dims).size, problems: [], extras: [], ignoredTiedLmHead: true });
      const names = ck.tensors.list().map((t) => t.name);
      expect(names).toEqual([...expectedTensors(ck.dims).keys(), LM_HEAD].sort());
    } finally {
      await ck.tensors.close();
    }
  });

  it('validates, and every tensor reads as finite float32 of the declared size', async () => {
    const ck = await openCheckpoint(await tinyCheckpointDir());
    try {
      expect(ck.report).toMatchObject({ problems: [], extras: [], ignoredTiedLmHead: true });
      expect(ck.dims.text).toMatchObject({ hidden: 96, heads: 4, kvHeads: 2, headDim: 32, vocab: 151936, tied: true });
      expect(ck.dims.audio).toMatchObject({ dModel: 64, layers: 3, downsampleHidden: 16, freqAfterConv: 16 });
      const list = ck.tensors.list();
      expect(list.length).toBe(expectedTensors(ck.dims).size + 1);
      for (const t of list) {
        expect(t.dtype).toBe('BF16');
        const v = await ck.tensors.readFloat32(t.name);
        expect([t.name, v.length]).toEqual([t.name, t.shape.reduce((a, b) => a * b, 1)]);
        expect([t.name, v.every(Number.isFinite)]).toEqual([t.name, true]);
      }
      // Row streaming agrees with the whole-tensor read.
      const emb = await ck.tensors.readFloat32(EMBED_TOKENS);
      const rows = await ck.tensors.readFloat32Rows(EMBED_TOKENS, 151676, 3);
      expect(Array.from(rows)).toEqual(Array.from(emb.subarray(151676 * 96, 151679 * 96)));
    } finally {
      await ck.tensors.close();
    }
  });

  it('expects exactly the tensors the fixture generator plans (two independent derivations)', () => {
    const p = PRESETS.tiny;
    const dims = {
      audio: { numMelBins: p.audio.num_mel_bins, layers: p.audio.encoder_layers, heads: p.audio.encoder_attention_heads,
        ffnDim: p.audio.encoder_ffn_dim, dModel: p.audio.d_model, outputDim: p.audio.output_dim, nWindow: 50,
        nWindowInfer: 800, downsampleHidden: p.audio.downsample_hidden_size, maxSourcePositions: 1500,
        chunkFrames: 100, windowTokens: 104, freqAfterConv: 16 },
      text: { vocab: p.text.vocab_size, hidden: p.text.hidden_size, intermediate: p.text.intermediate_size,
        layers: p.text.num_hidden_layers, heads: p.text.num_attention_heads, kvHeads: p.text.num_key_value_heads,
        headDim: p.text.head_dim, ropeTheta: 1e6, rmsEps: 1e-6, tied: true, mropeSection: [6, 5, 5] },
      tokens: { audio: 151676, audioStart: 151669, audioEnd: 151670 },
    };
    const ours = [...expectedTensors(dims)].map(([n, s]) => `${n} ${s.join('x')}`).sort();
    const theirs = tensorPlan(p).map((e) => `${e.name} ${e.shape.join('x')}`).sort();
    expect(ours).toEqual(theirs);
  });
});
