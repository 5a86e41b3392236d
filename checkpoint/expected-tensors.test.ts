import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { CheckpointConfigSchema, dimsFromConfig } from './config.js';
import { checkCheckpoint, expectedTensors, LM_HEAD } from './expected-tensors.js';
import { openCheckpoint } from './open-checkpoint.js';
import { openSafetensors } from './safetensors.js';
import { craftCheckpoint, smallConfigJson, type CraftOptions } from './test-checkpoint.js';
import { floatTensor } from './test-writer.js';

let root: string;
let n = 0;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'q3o-ckpt-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

async function crafted(opts: CraftOptions = {}): Promise<string> {
  const d = join(root, `k${n++}`);
  await craftCheckpoint(d, opts);
  return d;
}

async function openError(dir: string): Promise<string> {
  const err = await openCheckpoint(dir).then(
    async (c) => { await c.tensors.close(); return undefined; },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  return msg;
}

const dimsOf = (tied = true) => dimsFromConfig(CheckpointConfigSchema.parse(smallConfigJson({ tied })));

describe('expectedTensors', () => {
  it('lists the official names and [out,in] shapes', () => {
    const e = expectedTensors(dimsOf());
    // Written out by hand from modeling_qwen3_asr.py for the small config
    // (C=4, mel 16 -> 2 freq bins after three stride-2 convs, d_model 8, ffn 12, out 10;
    //  text hidden 10, heads 2 x head_dim 4, 1 kv head, intermediate 14, vocab 20).
    const want: Record<string, number[]> = {
      'thinker.audio_tower.conv2d1.weight': [4, 1, 3, 3],
      'thinker.audio_tower.conv2d1.bias': [4],
      'thinker.audio_tower.conv2d3.weight': [4, 4, 3, 3],
      'thinker.audio_tower.conv_out.weight': [8, 8],
      'thinker.audio_tower.layers.0.self_attn.out_proj.bias': [8],
      'thinker.audio_tower.layers.0.self_attn_layer_norm.bias': [8],
      'thinker.audio_tower.layers.0.fc1.weight': [12, 8],
      'thinker.audio_tower.layers.0.fc2.weight': [8, 12],
      'thinker.audio_tower.layers.0.final_layer_norm.weight': [8],
      'thinker.audio_tower.ln_post.bias': [8],
      'thinker.audio_tower.proj1.weight': [8, 8],
      'thinker.audio_tower.proj2.weight': [10, 8],
      'thinker.audio_tower.proj2.bias': [10],
      'thinker.model.embed_tokens.weight': [20, 10],
      'thinker.model.layers.1.input_layernorm.weight': [10],
      'thinker.model.layers.1.self_attn.q_proj.weight': [8, 10],
      'thinker.model.layers.1.self_attn.k_proj.weight': [4, 10],
      'thinker.model.layers.1.self_attn.v_proj.weight': [4, 10],
      'thinker.model.layers.1.self_attn.o_proj.weight': [10, 8],
      'thinker.model.layers.1.self_attn.q_norm.weight': [4],
      'thinker.model.layers.1.self_attn.k_norm.weight': [4],
      'thinker.model.layers.1.post_attention_layernorm.weight': [10],
      'thinker.model.layers.1.mlp.gate_proj.weight': [14, 10],
      'thinker.model.layers.1.mlp.up_proj.weight': [14, 10],
      'thinker.model.layers.1.mlp.down_proj.weight': [10, 14],
      'thinker.model.norm.weight': [10],
    };
    for (const [name, shape] of Object.entries(want)) expect([name, e.get(name)]).toEqual([name, shape]);
    for (const absent of [
      'thinker.audio_tower.conv_out.bias', 'thinker.audio_tower.positional_embedding.positional_embedding',
      'thinker.model.layers.0.self_attn.q_proj.bias', LM_HEAD,
    ]) expect(e.has(absent)).toBe(false);
    // 6 conv + 1 conv_out + 16 per audio layer + 6 (ln_post, proj1, proj2) + embed + 11 per text layer + norm.
    expect(e.size).toBe(6 + 1 + 16 * 1 + 6 + 1 + 11 * 2 + 1);
  });

  it('adds lm_head only when not tied', () => {
    expect(expectedTensors(dimsOf(false)).get(LM_HEAD)).toEqual([20, 10]);
  });
});

describe('openCheckpoint validation', () => {
  it('opens a complete crafted checkpoint and reads a tensor', async () => {
    const ck = await openCheckpoint(await crafted());
    try {
      expect(ck.dims.text.hidden).toBe(10);
      expect(ck.report).toEqual({ matched: expectedTensors(ck.dims).size, problems: [], extras: [], ignoredTiedLmHead: false });
      expect((await ck.tensors.readFloat32('thinker.model.norm.weight')).length).toBe(10);
    } finally {
      await ck.tensors.close();
    }
  });

  it('opens a sharded crafted checkpoint', async () => {
    const ck = await openCheckpoint(await crafted({ shards: 3 }));
    try {
      const files = new Set(ck.tensors.list().map((t) => t.file));
      expect(files.size).toBe(3);
      expect(ck.report.problems).toEqual([]);
    } finally {
      await ck.tensors.close();
    }
  });

  it('names a missing tensor and counts further problems', async () => {
    const msg = await openError(await crafted({
      edit: (ts) => ts.filter((t) => !t.name.endsWith('layers.1.mlp.up_proj.weight') && t.name !== 'thinker.model.norm.weight'),
    }));
    expect(msg).toMatch(/tensor thinker\.model\.layers\.1\.mlp\.up_proj\.weight is missing \(expected shape \[14,10\]\) \(and 1 more problems\)/);
  });

  it('names a wrongly shaped tensor with expected and found shapes', async () => {
    const msg = await openError(await crafted({
      edit: (ts) => ts.map((t) => (t.name === 'thinker.audio_tower.proj2.weight' ? floatTensor(t.name, [8, 10]) : t)),
    }));
    expect(msg).toMatch(/tensor thinker\.audio_tower\.proj2\.weight: expected shape \[10,8\], found \[8,10\]$/);
  });

  it('rejects a non-float dtype', async () => {
    const msg = await openError(await crafted({
      edit: (ts) => ts.map((t) => (t.name === 'thinker.model.norm.weight'
        ? { name: t.name, dtype: 'I16' as const, shape: [10], data: new Uint8Array(20) } : t)),
    }));
    expect(msg).toMatch(/tensor thinker\.model\.norm\.weight: dtype I16 is not a float type/);
  });

  it('accepts F16 and F32 tensors', async () => {
    const ck = await openCheckpoint(await crafted({
      edit: (ts) => ts.map((t, i) => floatTensor(t.name, t.shape, i % 2 ? 'F16' : 'F32')),
    }));
    expect(ck.report.problems).toEqual([]);
    await ck.tensors.close();
  });

  it('requires lm_head when not tied', async () => {
    const msg = await openError(await crafted({ tied: false, edit: (ts) => ts.filter((t) => t.name !== LM_HEAD) }));
    expect(msg).toMatch(/tensor thinker\.lm_head\.weight is missing \(expected shape \[20,10\]\)/);
    const ck = await openCheckpoint(await crafted({ tied: false }));
    expect(ck.tensors.has(LM_HEAD)).toBe(true);
    await ck.tensors.close();
  });

  it('ignores a correctly shaped lm_head when tied, rejects a wrong one', async () => {
    const ck = await openCheckpoint(await crafted({ edit: (ts) => [...ts, floatTensor(LM_HEAD, [20, 10])] }));
    expect(ck.report.ignoredTiedLmHead).toBe(true);
    expect(ck.report.extras).toEqual([]);
    await ck.tensors.close();
    const msg = await openError(await crafted({ edit: (ts) => [...ts, floatTensor(LM_HEAD, [21, 10])] }));
    expect(msg).toMatch(/tensor thinker\.lm_head\.weight: expected shape \[20,10\] \(tied to embed_tokens\), found \[21,10\]/);
  });

  it('tolerates and lists unexpected extra tensors', async () => {
    const ck = await openCheckpoint(await crafted({
      edit: (ts) => [...ts, floatTensor('zzz.extra', [2]), floatTensor('thinker.audio_tower.positional_embedding.positional_embedding', [3, 8])],
    }));
    expect(ck.report.extras).toEqual(['thinker.audio_tower.positional_embedding.positional_embedding', 'zzz.extra']);
    await ck.tensors.close();
  });

  it('rejects biases the graphs would silently drop', async () => {
    const msg = await openError(await crafted({ edit: (ts) => [...ts, floatTensor('thinker.model.layers.0.self_attn.q_proj.bias', [8])] }));
    expect(msg).toMatch(/tensor thinker\.model\.layers\.0\.self_attn\.q_proj\.bias is not supported/);
    const msg2 = await openError(await crafted({ edit: (ts) => [...ts, floatTensor('thinker.audio_tower.conv_out.bias', [8])] }));
    expect(msg2).toMatch(/conv_out\.bias is not supported/);
  });

  it('reports config and weight problems with the file', async () => {
    const d = await crafted();
    await unlink(join(d, 'model.safetensors'));
    expect(await openError(d)).toMatch(/no model\.safetensors or model\.safetensors\.index\.json/);
    const d2 = await crafted();
    await unlink(join(d2, 'config.json'));
    expect(await openError(d2)).toMatch(/config\.json: no such file/);
  });

  it('checkCheckpoint lists every problem without throwing', async () => {
    const d = await crafted({ edit: (ts) => ts.filter((t) => !t.name.includes('.layers.0.')) });
    const ck = await openCheckpoint(d).catch(() => undefined);
    expect(ck).toBeUndefined();
    const src = await openSafetensors(d);
    const report = checkCheckpoint(src, dimsOf());
    await src.close();
    // The one-layer encoder has no layer left: one layer-count problem; decoder layer 0: its 11 tensors.
    expect(report.problems.length).toBe(1 + 11);
    expect(report.problems[0]).toMatch(/encoder_layers is 1, but the checkpoint has no encoder layer tensors \(tensor thinker\.audio_tower\.layers\.0\.self_attn\.q_proj\.weight is missing\)/);
  });
});
