import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/hostile-support.js';
import { tinyCheckpointDir, tinyCheckpointVariantDir } from '../fixtures/test-support.js';
import { exportModel } from '../graph-builder/export.js';
import { ExportRecordSchema } from '../model-dir/export-record.js';
import { FakeHub, type FakeFile } from './hub-fake.test-support.js';
import { openCheckpoint } from './open-checkpoint.js';
import { craftCheckpoint, smallConfigJson, smallHfConfigJson } from './test-checkpoint.js';
import { floatTensor } from './test-writer.js';

/**
 * Issue 15's proof: the original checkpoint and its transformers-native (-hf) twin give the same
 * model directory and archive byte for byte (only the fields naming the source differ), and bad
 * -hf checkpoints get one-line errors naming the tensor or field.
 */

const scratch = mkdtempSync(join(tmpdir(), 'qwen3-onnx-hf-format-'));
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });
let counter = 0;
const fresh = (name: string): string => join(scratch, `${name}-${(counter += 1)}`);

const sha256 = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');
const hashes = (dir: string, skip: string[] = []): Record<string, string> =>
  Object.fromEntries(readdirSync(dir).filter((f) => !skip.includes(f)).sort().map((f) => [f, sha256(join(dir, f))]));

async function openError(dir: string): Promise<string> {
  try {
    const ck = await openCheckpoint(dir);
    await ck.tensors.close();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected openCheckpoint to fail');
}

describe('original and -hf checkpoints of one model', () => {
  it('export to byte-identical graphs, weights, config.json and tokenizer files; the record names the format', async () => {
    const fromOriginal = fresh('export-original');
    const fromHf = fresh('export-hf');
    await exportModel({ model: await tinyCheckpointDir(), output: fromOriginal });
    await exportModel({ model: await tinyCheckpointVariantDir({ format: 'hf' }), output: fromHf });
    const a = hashes(fromOriginal, ['export-record.json']);
    expect(Object.keys(a)).toEqual(expect.arrayContaining([
      'config.json', 'decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data', 'embed_tokens.bin', 'encoder.onnx',
      'merges.txt', 'preprocessor_config.json', 'chat_template.json', 'tokenizer_config.json', 'vocab.json',
    ]));
    expect(hashes(fromHf, ['export-record.json'])).toEqual(a);
    const recordOf = (dir: string) => ExportRecordSchema.parse(JSON.parse(readFileSync(join(dir, 'export-record.json'), 'utf8')));
    expect(recordOf(fromOriginal).source.format).toBe('original');
    expect(recordOf(fromHf).source.format).toBe('hf');
    expect(recordOf(fromHf).source.files.map((f) => f.path)).toEqual(expect.arrayContaining(['tokenizer.json', 'processor_config.json', 'chat_template.jinja']));
    // Records written before the field existed read as the original format.
    const old = recordOf(fromOriginal) as { source: Record<string, unknown> };
    delete old.source.format;
    expect(ExportRecordSchema.parse(old).source.format).toBe('original');

    // And the archives (fp32 variant) are identical too.
    const dist = { original: fresh('dist-original'), hf: fresh('dist-hf') };
    for (const [which, dir] of [['original', fromOriginal], ['hf', fromHf]] as const) {
      const run = await runCli(['package', '--model-dir', dir, '--variant', 'fp32', '--output', dist[which]]);
      expect(run.stderr, which).toBe('');
      expect(run.code, which).toBe(0);
    }
    // Every member is identical but the archive's own manifest.json, which names the source.
    const members = (which: 'original' | 'hf'): string => {
      const to = fresh(`unpacked-${which}`);
      mkdirSync(to);
      const tar = spawnSync('tar', ['-xzf', join(dist[which], 'qwen3-asr-custom-fp32.tar.gz'), '-C', to], { encoding: 'utf8' });
      expect(tar.status, tar.stderr).toBe(0);
      return join(to, 'qwen3-asr-custom-fp32');
    };
    const [mo, mh] = [members('original'), members('hf')];
    expect(hashes(mh, ['manifest.json'])).toEqual(hashes(mo, ['manifest.json']));
    expect(Object.keys(hashes(mo, ['manifest.json']))).toContain('vocab.json');
    const manifestOf = (dir: string) => {
      const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
      delete m.source;
      return m;
    };
    expect(manifestOf(mh)).toEqual(manifestOf(mo));
  }, 240_000);

  it('the tied lm_head stored or left out makes no difference to the export', async () => {
    const withHead = fresh('export-with-head');
    const without = fresh('export-without-head');
    await exportModel({ model: await tinyCheckpointDir(), output: withHead });
    await exportModel({ model: await tinyCheckpointVariantDir({ lmHead: false }), output: without });
    expect(hashes(without, ['export-record.json'])).toEqual(hashes(withHead, ['export-record.json']));
  }, 120_000);
});

describe('bad -hf checkpoints', () => {
  it('loads a small crafted -hf checkpoint under the original names', async () => {
    const d = fresh('hf-ok');
    await craftCheckpoint(d, { format: 'hf' });
    const ck = await openCheckpoint(d);
    try {
      expect(ck.format).toBe('hf');
      expect(ck.report.problems).toEqual([]);
      expect(ck.tensors.has('thinker.audio_tower.proj1.weight')).toBe(true);
      expect(ck.tensors.has('model.multi_modal_projector.linear_1.weight')).toBe(false);
      expect((await ck.tensors.readFloat32('thinker.model.norm.weight')).length).toBe(10);
    } finally {
      await ck.tensors.close();
    }
  });

  it('a missing tensor is named as the -hf checkpoint stores it', async () => {
    const d = fresh('hf-missing');
    await craftCheckpoint(d, { format: 'hf', edit: (ts) => ts.filter((t) => t.name !== 'model.multi_modal_projector.linear_2.bias') });
    expect(await openError(d)).toBe(`${d}: tensor model.multi_modal_projector.linear_2.bias is missing (expected shape [10])`);
  });

  it('an unknown rename is named', async () => {
    const d = fresh('hf-unknown');
    await craftCheckpoint(d, { format: 'hf', edit: (ts) => [...ts, floatTensor('model.vision_tower.patch_embed.weight', [2])] });
    expect(await openError(d)).toBe(
      `${d}: tensor model.vision_tower.patch_embed.weight has no known original name (an -hf checkpoint's tensors start with model.multi_modal_projector.linear_1., model.multi_modal_projector.linear_2., model.audio_tower., model.language_model., lm_head., score.)`);
    const e = fresh('hf-proj-in-tower');
    await craftCheckpoint(e, { format: 'hf', edit: (ts) => [...ts, floatTensor('model.audio_tower.proj1.weight', [2])] });
    expect(await openError(e)).toMatch(/tensor model\.audio_tower\.proj1\.weight has no known original name/);
  });

  it('a nested (original) config beside -hf tensors names the field', async () => {
    const d = fresh('hf-nested');
    await craftCheckpoint(d, { format: 'hf', config: smallConfigJson() });
    expect(await openError(d)).toBe(
      `${join(d, 'config.json')}: thinker_config: the original nested config, but tensor model.audio_tower.conv2d1.bias has an -hf name; an -hf checkpoint's config.json has audio_config and text_config at top level`);
    const both = fresh('hf-both');
    await craftCheckpoint(both, { format: 'hf', config: { ...smallHfConfigJson(), thinker_config: {} } });
    expect(await openError(both)).toMatch(/config\.json: thinker_config: found both the original nested layout \(thinker_config\) and the -hf flat layout/);
  });

  it('an -hf config with a missing or wrong field names it in -hf terms', async () => {
    const cfg = smallHfConfigJson();
    delete (cfg.text_config as Record<string, unknown>).rope_parameters;
    const d = fresh('hf-no-rope');
    await craftCheckpoint(d, { format: 'hf', config: cfg });
    expect(await openError(d)).toMatch(/config\.json: text_config\.rope_parameters: /);
    const cfg2 = smallHfConfigJson();
    (cfg2.text_config as Record<string, unknown>).num_hidden_layers = 3;
    const e = fresh('hf-layers');
    await craftCheckpoint(e, { format: 'hf', config: cfg2 });
    expect(await openError(e)).toBe(
      `${e}: config.json text_config.num_hidden_layers is 3, but the checkpoint has decoder layers 0..1 only (tensor model.language_model.layers.2.input_layernorm.weight is missing)`);
  });

  it('any other format is refused in one line saying what was found and what is expected', async () => {
    const d = fresh('whisper');
    await craftCheckpoint(d, { config: { model_type: 'whisper', d_model: 8 } });
    expect(await openError(d)).toBe(
      `${join(d, 'config.json')}: not a Qwen3-ASR config: found model_type "whisper" with neither thinker_config nor audio_config + text_config; `
      + 'expected the original layout (model_type "qwen3_asr" with thinker_config.audio_config/text_config) '
      + 'or the transformers-native -hf layout (model_type "qwen3_asr" with top-level audio_config and text_config)');
    const o = fresh('original-with-hf-config');
    await craftCheckpoint(o, { config: smallHfConfigJson() });
    expect(await openError(o)).toMatch(/config\.json: text_config: the flat -hf config, but tensor thinker\.\S+ has an original \(thinker\.\*\) name/);
  });
});

describe('an -hf repo on the hub', () => {
  it('downloads through the verified cache path (tokenizer.json, processor_config.json, chat_template.jinja) and exports', async () => {
    const src = await tinyCheckpointVariantDir({ format: 'hf' });
    const files: Record<string, FakeFile> = { 'README.md': { content: Buffer.from('# tiny -hf\n') } };
    for (const name of readdirSync(src)) files[name] = { content: await readFile(join(src, name)), lfs: name.endsWith('.safetensors') };
    const hub = await new FakeHub('acme/tiny-asr-hf', 'c'.repeat(40), files).start();
    const cache = fresh('hub-cache');
    const saved = { HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE, HF_TOKEN: process.env.HF_TOKEN };
    process.env.HF_HUB_CACHE = cache;
    process.env.HF_ENDPOINT = hub.hubUrl;
    delete process.env.HF_HUB_OFFLINE;
    delete process.env.HF_TOKEN;
    try {
      // The truncated transfer of the weights is resumed and verified like any other.
      hub.faults = { truncate: { 'model.safetensors': 1 } };
      const out = fresh('export-from-hub');
      const result = await exportModel({ model: 'acme/tiny-asr-hf', output: out });
      const snapshot = join(cache, 'models--acme--tiny-asr-hf', 'snapshots', 'c'.repeat(40));
      expect(readdirSync(snapshot).sort()).toEqual(readdirSync(src).sort());
      expect(result.commit).toBe('c'.repeat(40));
      expect(hub.contentRequests().some((r) => r.range !== undefined)).toBe(true);
      const local = fresh('export-local-hf');
      await exportModel({ model: src, output: local });
      expect(hashes(out, ['export-record.json'])).toEqual(hashes(local, ['export-record.json']));
      const record = ExportRecordSchema.parse(JSON.parse(readFileSync(join(out, 'export-record.json'), 'utf8')));
      expect(record.source).toMatchObject({ model: 'acme/tiny-asr-hf', commit: 'c'.repeat(40), format: 'hf' });
    } finally {
      await hub.close();
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }, 180_000);
});

describe('a config with everything an -hf text_config may carry', () => {
  it('reads mrope_section from rope_parameters when given and checks it', async () => {
    const cfg = smallHfConfigJson();
    ((cfg.text_config as Record<string, unknown>).rope_parameters as Record<string, unknown>).mrope_section = [1, 1, 1];
    const d = fresh('hf-mrope');
    await craftCheckpoint(d, { format: 'hf', config: cfg });
    expect(await openError(d)).toBe(`${join(d, 'config.json')}: text_config.rope_parameters.mrope_section: [1,1,1] must be three numbers summing to head_dim/2 = 2`);
    await writeFile(join(d, 'config.json'), JSON.stringify(smallHfConfigJson()));
    const ck = await openCheckpoint(d);
    await ck.tensors.close();
    expect(ck.dims.text.mropeSection).toEqual([1, 1, 0]);
  });
});
