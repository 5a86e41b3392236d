import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { UserError } from '../common/errors.js';
import { silentProgress } from '../common/progress.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import { buildRelease, parseVariants, type BuildOptions } from './build.js';
import { verifyArchive } from './verify.js';
import { planPublish } from './publish.js';
import { modelCard } from './model-card.js';
import { PackageManifestSchema } from './manifest.js';

// The files a consumer loads for each variant (CONTRACT.md), plus config, embeddings, tokenizer.
const SUPPORT = ['chat_template.json', 'config.json', 'embed_tokens.bin', 'merges.txt', 'preprocessor_config.json', 'tokenizer_config.json', 'vocab.json'];
const CONTRACT_FILES: Record<string, string[]> = {
  fp32: ['decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data', 'encoder.onnx', 'encoder_weights.data', ...SUPPORT].sort(),
  // build's default recipe is the whole model: the int4 encoder replaces the float one.
  int4: ['decoder_init.int4.onnx', 'decoder_step.int4.onnx', 'decoder_weights.int4.data', 'encoder.int4.onnx', 'encoder_weights.int4.data', ...SUPPORT].sort(),
};
const WHOLE_RECIPE = {
  decoder_init: 'int4_rtn_block64_al4', decoder_step: 'int4_rtn_block64_al4', embedding: 'int4_rtn_block64_gather',
  encoder: 'int4_rtn_block64_al4', lm_head: 'int4_rtn_block64_al4', preset: 'whole',
};

let work: string;
let first: Awaited<ReturnType<typeof buildRelease>>;

function options(output: string, checkpoint: string): BuildOptions {
  return {
    model: checkpoint, output, variants: ['fp32', 'int4'], compareAudio: [join(__dirname, '..', '..', 'shared', 'audio', 'jfk.wav')],
    // A random-weights model has flat logits, so int4 flips near-ties far more often than on
    // a trained model; the thresholds still refuse a broken quantisation (cosine well below 0.9).
    minTop1: 0.5, minCosine: 0.95, compareMaxTokens: 6, level: 'huffman', sizeLabel: 'tiny', progress: silentProgress,
  };
}

describe('build (one shot) on the tiny fixture', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'qwen3-onnx-build-test-'));
    const checkpoint = await tinyCheckpointDir();
    first = await buildRelease(options(join(work, 'a'), checkpoint));
  }, 600_000);
  afterAll(async () => { if (work) await rm(work, { recursive: true, force: true }); });

  it('writes the dist directory the release publishes', async () => {
    const names = (await readdir(join(work, 'a', 'dist'))).sort();
    expect(names).toEqual(['README.md', 'SHA256SUMS', 'qwen3-asr-tiny-fp32.manifest.json', 'qwen3-asr-tiny-fp32.tar.gz', 'qwen3-asr-tiny-int4.manifest.json', 'qwen3-asr-tiny-int4.tar.gz']);
    const sums = await readFile(join(work, 'a', 'dist', 'SHA256SUMS'), 'utf8');
    for (const p of first.packages) expect(sums).toContain(`${p.manifest.archive.sha256}  ${p.manifest.archive.path}\n`);
  });

  it('unpacks each archive to exactly the contract file list, no file twice', async () => {
    for (const variant of ['fp32', 'int4']) {
      const archive = join(work, 'a', 'dist', `qwen3-asr-tiny-${variant}.tar.gz`);
      const listing = execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).trim().split('\n');
      const top = `qwen3-asr-tiny-${variant}`;
      expect(listing[0]).toBe(`${top}/`);
      // The archive's own manifest comes last, after the sorted model files.
      expect(listing[listing.length - 1]).toBe(`${top}/manifest.json`);
      const files = listing.slice(1, -1).map((l) => l.replace(`${top}/`, ''));
      expect(files).toEqual(CONTRACT_FILES[variant]);
      expect(new Set(files).size).toBe(files.length);
      const manifest = PackageManifestSchema.parse(JSON.parse(await readFile(archive.replace('.tar.gz', '.manifest.json'), 'utf8')));
      expect(manifest.files.map((f) => f.path)).toEqual(CONTRACT_FILES[variant]);
      expect(manifest.source?.files.find((f) => f.path === 'model.safetensors')?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(manifest.recipe).toEqual(variant === 'fp32' ? null : WHOLE_RECIPE);
      const verified = await verifyArchive(archive, { depth: 'full', progress: silentProgress });
      expect(verified.archiveManifest.files).toEqual(manifest.files);
      expect(verified.manifestChecked && verified.sumsChecked).toBe(true);
    }
    const fp32Config = execFileSync('tar', ['-xzOf', join(work, 'a', 'dist', 'qwen3-asr-tiny-fp32.tar.gz'), 'qwen3-asr-tiny-fp32/config.json'], { encoding: 'utf8' });
    expect(JSON.parse(fp32Config).quantization).toBeUndefined();
  }, 300_000);

  it('writes a build record, a model card and a publish plan that check out', async () => {
    const record = JSON.parse(await readFile(join(work, 'a', 'build-record.json'), 'utf8'));
    expect(record.tool.node).toBe(process.version);
    expect(record.inputs.files.map((f: { path: string }) => f.path)).toContain('model.safetensors');
    expect(record.comparisons[0].passed).toBe(true);
    // The gate ran on what was packaged: the whole-model int4 variant.
    expect(record.options.preset).toBe('whole');
    expect(record.options.recipes).toEqual({ int4: WHOLE_RECIPE });
    const card = await readFile(join(work, 'a', 'dist', 'README.md'), 'utf8');
    expect(card).toContain('the encoder\'s linears are `int4_rtn_block64_al4` too');
    expect(card).toContain('the token lookup reads the lm_head\'s int4 table');
    expect(card).toBe(modelCard(first.packages.map((p) => p.manifest)));
    for (const p of first.packages) expect(card).toContain(p.manifest.archive.sha256);
    const plan = await planPublish(join(work, 'a', 'dist'), 'someone/qwen3-asr-tiny-onnx');
    expect(plan.files.map((f) => f.path).sort()).toEqual(['README.md', 'SHA256SUMS', 'qwen3-asr-tiny-fp32.manifest.json', 'qwen3-asr-tiny-fp32.tar.gz', 'qwen3-asr-tiny-int4.manifest.json', 'qwen3-asr-tiny-int4.tar.gz']);
  });

  it('verify-package names the tampered file', async () => {
    const dist = join(work, 'tampered');
    await cp(join(work, 'a', 'dist'), dist, { recursive: true });
    const archive = join(dist, 'qwen3-asr-tiny-int4.tar.gz');
    // Flip one byte inside config.json's content and re-compress: the gzip stream stays valid,
    // so only the manifest checksum can catch it.
    const tar = gunzipSync(await readFile(archive));
    const at = tar.indexOf(Buffer.from('"model_type"'));
    expect(at).toBeGreaterThan(0);
    tar[at + 1] = 'M'.charCodeAt(0);
    await writeFile(archive, gzipSync(tar));
    await expect(verifyArchive(archive, { depth: 'checksums', progress: silentProgress })).rejects.toThrow(/config\.json does not match its manifest checksum/);
    await expect(planPublish(dist, 'someone/x')).rejects.toThrow(/qwen3-asr-tiny-int4\.tar\.gz: config\.json does not match its manifest checksum/);
  });

  it('refuses an int4 that diverges past the thresholds, packaging nothing and leaving no output', async () => {
    const output = join(work, 'strict');
    // No int4 of any model reaches a mean cosine of exactly 1 with fp32: the check must refuse it.
    await expect(buildRelease({ ...options(output, await tinyCheckpointDir()), minCosine: 1 }))
      .rejects.toThrow(/^int4 diverges from fp32 past the thresholds, not packaging it: int4 vs fp32: mean logit cosine 0\.\d{4} < 1$/);
    await expect(stat(output)).rejects.toThrow(/ENOENT/);
  }, 300_000);

  it('refuses unreadable --compare-audio in one line before exporting anything', async () => {
    const output = join(work, 'bad-audio');
    const bad = join(work, 'not-a-wav.wav');
    await writeFile(bad, 'not audio\n');
    const messages: string[] = [];
    const progress = { ...silentProgress, info: (m: string) => { messages.push(m); } };
    const err = await buildRelease({ ...options(output, await tinyCheckpointDir()), compareAudio: [bad], progress }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: [^\n]+$`));
    expect(messages).toEqual([]);
    await expect(stat(output)).rejects.toThrow(/ENOENT/);
  });

  it('refuses a bad recipe in one line before exporting anything', async () => {
    const output = join(work, 'bad-recipe');
    const messages: string[] = [];
    const progress = { ...silentProgress, info: (m: string) => { messages.push(m); } };
    await expect(buildRelease({ ...options(output, await tinyCheckpointDir()), recipe: { encoder: 'int4,block=0' }, progress }))
      .rejects.toThrow(/^--encoder int4,block=0: block must be a power of two from 16 to 256, got 0$/);
    await expect(buildRelease({ ...options(output, await tinyCheckpointDir()), recipe: { vision: 'int4' }, progress }))
      .rejects.toThrow(/^--recipe: unknown component "vision"/);
    expect(messages).toEqual([]);
    await expect(stat(output)).rejects.toThrow(/ENOENT/);
  });

  it('packages the decoders-only int4 on request: the float encoder, the recipe saying so', async () => {
    const output = join(work, 'decoders');
    const r = await buildRelease({ ...options(output, await tinyCheckpointDir()), variants: ['int4'], preset: 'decoders' });
    const int4 = r.packages[0].manifest;
    expect(int4.files.map((f) => f.path)).toEqual(
      ['decoder_init.int4.onnx', 'decoder_step.int4.onnx', 'decoder_weights.int4.data', 'encoder.onnx', 'encoder_weights.data', ...SUPPORT].sort());
    expect(int4.recipe).toEqual({ ...WHOLE_RECIPE, encoder: 'fp32', embedding: 'fp32', preset: 'decoders' });
    expect(r.record.options.preset).toBe('decoders');
    // The whole-model archive is the smaller one (int4 encoder, no float lookup table).
    const whole = first.packages.find((p) => p.manifest.variant === 'int4')!.manifest;
    expect(whole.archive.size).toBeLessThan(int4.archive.size);
  }, 300_000);

  it('refuses unknown variants and a bad publish repo', async () => {
    expect(() => parseVariants('fp32,int3')).toThrow(/unknown variant "int3"/);
    expect(() => parseVariants('fp32,fp32')).toThrow(/duplicate/);
    await expect(planPublish(join(work, 'a', 'dist'), 'not a repo')).rejects.toThrow(/not a repo/);
  });
});
