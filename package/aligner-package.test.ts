import { copyFile, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatInspection, inspectPath } from '../cli/inspect.js';
import { UserError } from '../common/errors.js';
import { silentProgress } from '../common/progress.js';
import { tinyAlignerCheckpointDir, tinyAlignerModelDir } from '../fixtures/test-support.js';
import { buildRelease } from './build.js';
import { quantizeModelDir, QUANTIZE_DEFAULTS } from '../quantize/model-dir.js';
import { removeTempDirs, tempDir } from '../quantize/test-graphs.js';
import { packageModel } from './package-model.js';
import { verifyArchive } from './verify.js';

afterAll(removeTempDirs);

/** package, verify-package and inspect on the tiny forced aligner's model directory (model-dir/aligner.ts). */

let modelDir: string;

async function copyOf(src: string): Promise<string> {
  const dir = await tempDir('aligner-pkg');
  for (const f of await readdir(src)) await copyFile(join(src, f), join(dir, f));
  return dir;
}

const errorOf = (p: Promise<unknown>): Promise<Error | undefined> => p.then(() => undefined, (e: unknown) => e as Error);

beforeAll(async () => {
  modelDir = await copyOf(await tinyAlignerModelDir());
  await quantizeModelDir({ modelDir, ...QUANTIZE_DEFAULTS, bits: 4, exclude: [], threads: 2 });
}, 300_000);

describe('package and verify-package on a forced-aligner directory', () => {
  it('writes qwen3-forcedaligner-<size>-<variant>.tar.gz holding exactly the variant\'s files, which verify-package accepts in full', async () => {
    const out = await tempDir('aligner-dist');
    const tokenizer = ['chat_template.json', 'merges.txt', 'preprocessor_config.json', 'tokenizer_config.json', 'vocab.json'];
    const want: Record<string, string[]> = {
      fp32: ['aligner_decoder.onnx', 'aligner_weights.data', 'config.json', 'encoder.onnx', 'encoder_weights.data', 'manifest.json', ...tokenizer],
      int4: ['aligner_decoder.int4.onnx', 'aligner_weights.int4.data', 'config.json', 'encoder.int4.onnx', 'encoder_weights.int4.data', 'manifest.json', ...tokenizer],
    };
    for (const variant of ['fp32', 'int4']) {
      const r = await packageModel({ modelDir, variant, outputDir: out, progress: silentProgress, level: 1 });
      expect(r.archive).toBe(join(out, `qwen3-forcedaligner-custom-${variant}.tar.gz`));
      expect(r.manifest.files.map((f) => f.path).sort()).toEqual(want[variant].filter((f) => f !== 'manifest.json').sort());
      const v = await verifyArchive(r.archive, { depth: 'full', progress: silentProgress });
      // verify lists the members besides the manifest inside.
      expect(v.files.map((f) => f.path).sort()).toEqual(want[variant].filter((f) => f !== 'manifest.json').sort());
      expect(v.archiveManifest.files.length).toBe(want[variant].length - 1);
      expect(v.sumsChecked).toBe(true);
    }
    const int4 = JSON.parse(await readFile(join(out, 'qwen3-forcedaligner-custom-int4.manifest.json'), 'utf8')) as { recipe: Record<string, string> };
    expect(int4.recipe).toMatchObject({ aligner_decoder: 'int4_rtn_block64_al4', lm_head: 'int8_rtn_block64_al4' });
  });

  it('an absent variant is one line naming the missing aligner graph', async () => {
    const err = await errorOf(packageModel({ modelDir, variant: 'int8', outputDir: await tempDir('aligner-dist'), progress: silentProgress }));
    expect(err).toBeInstanceOf(UserError);
    expect(err?.message).toBe(`${modelDir}: variant int8 has no aligner_decoder.int8.onnx (run quantize first)`);
  });

  it('refuses a config.json whose classify_num disagrees with the graph, naming both', async () => {
    const dir = await copyOf(modelDir);
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...cfg, classify_num: 4000 }, null, 2));
    const err = await errorOf(packageModel({ modelDir: dir, variant: 'int4', outputDir: await tempDir('aligner-dist'), progress: silentProgress }));
    expect(err?.message).toBe(`${dir}/aligner_decoder.int4.onnx: output timestamp_logits is 5000 wide, but config.json classify_num is 4000`);
  });

  it('refuses a tokenizer without <timestamp> at timestamp_token_id', async () => {
    const dir = await copyOf(modelDir);
    const path = join(dir, 'tokenizer_config.json');
    const tc = JSON.parse(await readFile(path, 'utf8')) as { added_tokens_decoder: Record<string, unknown> };
    delete tc.added_tokens_decoder['151705'];
    await writeFile(path, JSON.stringify(tc, null, 2));
    const err = await errorOf(packageModel({ modelDir: dir, variant: 'fp32', outputDir: await tempDir('aligner-dist'), progress: silentProgress }));
    expect(err).toBeInstanceOf(UserError);
    expect(err?.message).toMatch(/timestamp_token_id/);
    await rm(dir, { recursive: true, force: true });
  });

  it('inspect names the directory a forced aligner and lists its graphs', async () => {
    const text = formatInspection(await inspectPath(modelDir));
    expect(text.split('\n')[0]).toBe(`model directory ${modelDir} (forced aligner)`);
    expect(text).toContain('config.json: ok');
    expect(text).toMatch(/aligner_decoder\.int4\.onnx .*\n  inputs:\n    input_ids: int64 \[1, seq_len\]\n    audio_features: float \[1, audio_len, 96\]\n  outputs:\n    timestamp_logits: float \[1, timestamps, 5000\]\n    timestamp_classes: int64 \[1, timestamps\]/);
  });

  it('build gates an aligner on its timestamp classes (--min-top1 is the share of fp32 classes kept) and records the packaged recipe', async () => {
    const base = {
      model: await tinyAlignerCheckpointDir(), variants: ['fp32', 'int4'], compareAudio: [], minCosine: 0.95,
      compareMaxTokens: 6, level: 'huffman' as const, progress: silentProgress,
    };
    const refused = join(await tempDir('aligner-build'), 'out');
    const err = await errorOf(buildRelease({ ...base, output: refused, minTop1: 0.9 }));
    expect(err).toBeInstanceOf(UserError);
    expect(err?.message).toBe('int4 diverges from fp32 past the thresholds, not packaging it: timestamp classes agree at 81/190 positions (42.6 % < --min-top1 0.9)');
    await expect(stat(refused)).rejects.toThrow(/ENOENT/);

    const output = join(await tempDir('aligner-build'), 'out');
    const { record, packages } = await buildRelease({ ...base, output, minTop1: 0.3 });
    expect(packages.map((p) => p.archive.split('/').pop())).toEqual(['qwen3-forcedaligner-custom-fp32.tar.gz', 'qwen3-forcedaligner-custom-int4.tar.gz']);
    const card = await readFile(join(output, 'dist', 'README.md'), 'utf8');
    expect(card).toContain('`aligner_decoder.onnx`');
    expect(card).toContain('npx qwen3-onnx align --model-dir qwen3-forcedaligner-custom-fp32 --language English');
    expect(card).not.toContain('decoder_init');
    // build quantises an aligner at its own default block (ALIGNER_BLOCK_SIZE, 128).
    expect(record.options.recipes).toEqual({ int4: {
      aligner_decoder: 'int4_rtn_block128_al4', embedding: 'int4_rtn_block128_gather', encoder: 'int4_rtn_block128_al4',
      lm_head: 'int8_rtn_block128_al4', preset: 'custom',
    } });
    expect(record.options.quantize).toMatchObject({ blockSize: 128 });
  }, 300_000);
});
