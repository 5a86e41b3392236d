import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Prng } from '../common/prng.js';
import { sha256File } from '../common/hash.js';
import { EMBED_TOKENS, LM_HEAD } from '../graph-builder/decoder.js';
import { fuseRmsNorm } from './fuse-rmsnorm.js';
import { loadModel, tensorBytes } from '../common/onnx/index.js';
import { writeSmoothedGraphs } from './smooth.js';
import { findSmoothingGroups } from './smoothing-groups.js';
import { copyModelDir, tinyExportedModelDir } from '../calibrate/test-support.js';

// Tiny fixture: hidden 96, 3 layers, 4 query heads / 2 kv heads of 32.
const H = 96;
const LAYERS = 3;
const P = 'thinker.model';

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await copyModelDir(await tinyExportedModelDir()));
});
afterAll(async () => { await cleanup?.(); });

/** Mean |activation| with a wide spread (log-normal), so scales are far from 1. */
function spreadStats(seed: number): Record<string, number[]> {
  const rng = new Prng(seed);
  const keys = [`${P}.norm.weight`];
  for (let l = 0; l < LAYERS; l++) keys.push(`${P}.layers.${l}.input_layernorm.weight`, `${P}.layers.${l}.post_attention_layernorm.weight`);
  return Object.fromEntries(keys.map((k) => [k, Array.from({ length: H }, () => Math.exp(1.5 * rng.normal()))]));
}

describe('findSmoothingGroups', () => {
  it('finds input_layernorm -> q/k/v, post_attention_layernorm -> gate/up and norm -> lm_head in both decoder graphs', async () => {
    for (const g of ['decoder_init', 'decoder_step']) {
      const { groups, skipped } = findSmoothingGroups(await loadModel(join(dir, `${g}.onnx`)));
      expect(skipped).toEqual([]);
      const byKey = Object.fromEntries(groups.map((x) => [x.key, x.linears.map((l) => `${l.weight}:${l.layout}`).sort()]));
      const expected: Record<string, string[]> = { [`${P}.norm.weight`]: [`${EMBED_TOKENS}:NK`] };
      for (let l = 0; l < LAYERS; l++) {
        const a = `${P}.layers.${l}`;
        expected[`${a}.input_layernorm.weight`] = ['q', 'k', 'v'].map((p) => `${a}.self_attn.${p}_proj.weight:KN`).sort();
        expected[`${a}.post_attention_layernorm.weight`] = ['gate', 'up'].map((p) => `${a}.mlp.${p}_proj.weight:KN`).sort();
      }
      expect(byKey).toEqual(expected);
      // The per-head q/k norms feed a Transpose, o_proj/down_proj follow no norm: none of them is a group.
      expect(groups.every((x) => x.channels === H)).toBe(true);
    }
  });

  it('finds the same groups after RMSNorm fusion (SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization)', async () => {
    const keys = async (skip: boolean | null) => {
      const m = await loadModel(join(dir, 'decoder_step.onnx'));
      if (skip !== null) expect(fuseRmsNorm(m, { skip }).rmsNorm).toBeGreaterThan(0);
      return findSmoothingGroups(m).groups.map((g) => `${g.key}<-${g.normNode.opType}:${g.linears.length}`).sort();
    };
    const plain = (await keys(null)).map((k) => k.replace('<-Mul', ''));
    expect((await keys(false)).map((k) => k.replace('<-SimplifiedLayerNormalization', ''))).toEqual(plain);
    const skipFused = await keys(true);
    expect(skipFused.some((k) => k.includes('<-SkipSimplifiedLayerNormalization'))).toBe(true);
    expect(skipFused.map((k) => k.replace(/<-(Skip)?SimplifiedLayerNormalization/, ''))).toEqual(plain);
  });
});

describe('writeSmoothedGraphs', () => {
  const runBoth = async (paths: { init: string; step: string }) => {
    const init = await ort.InferenceSession.create(paths.init);
    const step = await ort.InferenceSession.create(paths.step);
    const rng = new Prng(7);
    const S = 12;
    const A = 5;
    const ids = Array.from({ length: S }, (_, i) => (i * 7919 + 11) % 151936);
    const int64 = (v: number[], d: number[]) => new ort.Tensor('int64', BigInt64Array.from(v, BigInt), d);
    const feats = Float32Array.from({ length: A * H }, () => rng.normal());
    const a = await init.run({
      input_ids: int64(ids, [1, S]), position_ids: int64(ids.map((_, i) => i), [1, S]),
      audio_features: new ort.Tensor('float32', feats, [1, A, H]), audio_offset: int64([3], [1]),
    });
    const embeds = Float32Array.from({ length: H }, () => 0.05 * rng.normal());
    const b = await step.run({
      input_embeds: new ort.Tensor('float32', embeds, [1, 1, H]), position_ids: int64([S], [1, 1]),
      past_keys: a.present_keys, past_values: a.present_values,
    });
    const grab = (o: ort.InferenceSession.OnnxValueMapType) => Object.fromEntries(
      ['logits', 'present_keys', 'present_values'].map((k) => [k, Float32Array.from(o[k].data as Float32Array)]));
    const out = { init: grab(a), step: grab(b) };
    await init.release();
    await step.release();
    return out;
  };

  const relMax = (x: Float32Array, ref: Float32Array): number => {
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < ref.length; i++) { diff = Math.max(diff, Math.abs(x[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
    return diff / scale;
  };

  it.each([0.2, 0.5, 1])('leaves the float function unchanged (alpha %s, 1e-4 relative in onnxruntime)', async (alpha) => {
    const tag = `a${alpha}`;
    const report = await writeSmoothedGraphs({
      graphs: [
        { src: join(dir, 'decoder_init.onnx'), dst: join(dir, `decoder_init.${tag}.onnx`) },
        { src: join(dir, 'decoder_step.onnx'), dst: join(dir, `decoder_step.${tag}.onnx`) },
      ],
      dataFile: join(dir, `decoder_weights.${tag}.data`),
      meanAbs: spreadStats(1),
      alpha,
    });
    expect(report.norms).toBe(2 * LAYERS + 1);
    expect(report.linears).toBe(5 * LAYERS + 1);
    expect(report.untied).toEqual([[EMBED_TOKENS, LM_HEAD]]);
    expect(report.scaleMax / report.scaleMin).toBeGreaterThan(4); // the scales really move things

    const ref = await runBoth({ init: join(dir, 'decoder_init.onnx'), step: join(dir, 'decoder_step.onnx') });
    const got = await runBoth({ init: join(dir, `decoder_init.${tag}.onnx`), step: join(dir, `decoder_step.${tag}.onnx`) });
    for (const g of ['init', 'step'] as const) {
      for (const k of ['logits', 'present_keys', 'present_values']) {
        expect(relMax(got[g][k], ref[g][k]), `${g} ${k}`).toBeLessThan(1e-4);
      }
    }
  });

  it('gives lm_head its own tensor and leaves the embedding table decoder_init gathers from untouched', async () => {
    const embedBefore = await sha256File(join(dir, 'embed_tokens.bin'));
    await writeSmoothedGraphs({
      graphs: [
        { src: join(dir, 'decoder_init.onnx'), dst: join(dir, 'decoder_init.tied.onnx') },
        { src: join(dir, 'decoder_step.onnx'), dst: join(dir, 'decoder_step.tied.onnx') },
      ],
      dataFile: join(dir, 'decoder_weights.tied.data'),
      meanAbs: spreadStats(2),
      alpha: 0.5,
    });
    expect(await sha256File(join(dir, 'embed_tokens.bin'))).toBe(embedBefore);
    const orig = await loadModel(join(dir, 'decoder_init.onnx'));
    const init = await loadModel(join(dir, 'decoder_init.tied.onnx'));
    const step = await loadModel(join(dir, 'decoder_step.tied.onnx'));
    const initializer = (m: typeof init, name: string) => (m.model.graph!.initializer ?? []).find((t) => t.name === name);
    // The Gather still reads the original embedding bytes from the original data file.
    const gather = init.model.graph!.node!.find((n) => n.opType === 'Gather' && n.input![0] === EMBED_TOKENS);
    expect(gather).toBeDefined();
    expect(tensorBytes(initializer(init, EMBED_TOKENS)!, init.path)).toEqual(tensorBytes(initializer(orig, EMBED_TOKENS)!, orig.path));
    // lm_head reads its own smoothed copy; decoder_step no longer carries the embedding at all.
    for (const m of [init, step]) {
      const gemm = m.model.graph!.node!.find((n) => n.opType === 'Gemm')!;
      expect(gemm.input![1]).toBe(LM_HEAD);
      const src = tensorBytes(initializer(m, LM_HEAD)!, m.path);
      expect(src.kind === 'external' && src.file).toBe(join(dir, 'decoder_weights.tied.data'));
    }
    expect(initializer(step, EMBED_TOKENS)).toBeUndefined();
    // Both graphs share one copy of each smoothed tensor.
    const placement = (m: typeof init, name: string) => JSON.stringify(tensorBytes(initializer(m, name)!, m.path));
    expect(placement(init, LM_HEAD)).toBe(placement(step, LM_HEAD));
    expect(placement(init, `${P}.layers.1.mlp.up_proj.weight`)).toBe(placement(step, `${P}.layers.1.mlp.up_proj.weight`));
    expect((await readFile(join(dir, 'decoder_weights.tied.data'))).byteLength).toBeLessThan((await readFile(join(dir, 'decoder_weights.data'))).byteLength);
  });

  it('refuses statistics that do not match the graphs', async () => {
    const stats = spreadStats(3);
    const missing = { ...stats };
    delete missing[`${P}.layers.2.input_layernorm.weight`];
    const graphs = [{ src: join(dir, 'decoder_init.onnx'), dst: join(dir, 'decoder_init.bad.onnx') }];
    const dataFile = join(dir, 'decoder_weights.bad.data');
    await expect(writeSmoothedGraphs({ graphs, dataFile, meanAbs: missing, alpha: 0.2 }))
      .rejects.toThrow(/no activation statistics for norm thinker\.model\.layers\.2\.input_layernorm\.weight/);
    await expect(writeSmoothedGraphs({ graphs, dataFile, meanAbs: { ...stats, 'thinker.model.layers.9.input_layernorm.weight': stats[`${P}.norm.weight`] }, alpha: 0.2 }))
      .rejects.toThrow(/layers\.9\.input_layernorm.*another model/);
    await expect(writeSmoothedGraphs({ graphs, dataFile, meanAbs: { ...stats, [`${P}.norm.weight`]: [1, 2, 3] }, alpha: 0.2 }))
      .rejects.toThrow(/3 channels, the graph has 96/);
  });
});
