import { copyFile, link, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/test-support.js';
import { stepFeeds } from './step-feeds.js';
import { rewriteStep, type StepRewrite } from './step-variants.js';

// The prototype decoder_step rewrites of INVESTIGATION.md must compute what the exported graph
// computes (float32, tiny fixture): same output names, shapes and values.
describe('decoder_step prototype rewrites keep the outputs', () => {
  let dir: string;
  let reference: ort.InferenceSession.OnnxValueMapType;
  let feeds: Record<string, ort.Tensor>;
  const dims = { layers: 3, heads: 4, kvHeads: 2, headDim: 32 };

  beforeAll(async () => {
    const src = await tinyModelDir();
    dir = await mkdtemp(join(tmpdir(), 'step-variants-'));
    for (const f of ['decoder_step.onnx', 'config.json', 'embed_tokens.bin']) await copyFile(join(src, f), join(dir, f));
    // onnxruntime refuses external data reached through a symlink; a hard link (or a copy) is a file of this dir.
    await link(join(src, 'decoder_weights.data'), join(dir, 'decoder_weights.data')).catch(() => copyFile(join(src, 'decoder_weights.data'), join(dir, 'decoder_weights.data')));
    feeds = await stepFeeds(dir, 9);
    const s = await ort.InferenceSession.create(join(dir, 'decoder_step.onnx'));
    reference = await s.run(feeds);
    await s.release();
  });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  const cases: StepRewrite[][] = [['kv-direct'], ['gqa'], ['rotary'], ['kv-direct', 'rotary'], ['gqa', 'rotary']];
  for (const rewrites of cases) {
    it(rewrites.join(' + '), async () => {
      const file = join(dir, `decoder_step.${rewrites.join('_')}.onnx`);
      await rewriteStep(join(dir, 'decoder_step.onnx'), file, dims, rewrites);
      const s = await ort.InferenceSession.create(file);
      const got = await s.run(feeds);
      await s.release();
      for (const name of ['logits', 'present_keys', 'present_values']) {
        const want = reference[name].data as Float32Array;
        const have = got[name].data as Float32Array;
        expect(got[name].dims, name).toEqual(reference[name].dims);
        let scale = 0;
        let diff = 0;
        for (let i = 0; i < want.length; i++) {
          scale = Math.max(scale, Math.abs(want[i]));
          diff = Math.max(diff, Math.abs(want[i] - have[i]));
        }
        expect(diff / scale, `${name}: max diff ${diff} vs scale ${scale}`).toBeLessThan(1e-5);
      }
    });
  }
});
