import { copyFile, link, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { register } from '../cli/compare.js';
import { runCommandResult } from '../cli/test-support.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { compareVariants, cosineSimilarity, greedyAgreement, type CompareReport } from './compare.js';

const { onnx } = onnxProto;
const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const FILES = [join(AUDIO, 'jfk.wav'), join(AUDIO, 'notld/5s_were_better_off_up_here.wav')];

/** Copies an .onnx graph, pointing its external-data tensors at another file. */
async function retargetExternalData(from: string, to: string, location: string): Promise<void> {
  const model = onnx.ModelProto.decode(await readFile(from));
  for (const t of model.graph?.initializer ?? []) {
    for (const entry of t.externalData ?? []) if (entry.key === 'location') entry.value = location;
  }
  await writeFile(to, onnx.ModelProto.encode(model).finish());
}

let dir: string;

/**
 * A model directory with three variants: fp32 (the tiny export), `same` (the same graphs
 * under variant names) and `other` (decoder graphs of a differently seeded export, with their
 * own decoder_weights.other.data); `same` and `other` fall back to the fp32 encoder.
 */
beforeAll(async () => {
  const base = await tinyModelDir();
  const otherSeed = await tinyModelDir({ seed: 1 });
  dir = await mkdtemp(join(tmpdir(), 'qwen3-compare-'));
  for (const f of await readdir(base)) await symlink(join(base, f), join(dir, f));
  for (const g of ['decoder_init', 'decoder_step']) {
    await symlink(join(base, `${g}.onnx`), join(dir, `${g}.same.onnx`));
    await retargetExternalData(join(otherSeed, `${g}.onnx`), join(dir, `${g}.other.onnx`), 'decoder_weights.other.data');
  }
  // onnxruntime refuses external data that resolves outside the graph's folder: hard link (or copy).
  const data = join(dir, 'decoder_weights.other.data');
  await link(join(otherSeed, 'decoder_weights.data'), data).catch(() => copyFile(join(otherSeed, 'decoder_weights.data'), data));
});
afterAll(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

describe('compareVariants', () => {
  it('passes identical graphs and fails different ones, per file and pooled', async () => {
    const report = await compareVariants({ modelDir: dir, variants: ['fp32', 'same', 'other'], files: FILES, maxNewTokens: 6, threads: 1 });
    expect(report.variants).toEqual(['fp32', 'same', 'other']);
    const [same, other] = report.comparisons;

    expect(same.candidate).toBe('same');
    expect(same.passed).toBe(true);
    expect(same.top1Agreement).toBe(1);
    expect(same.meanCosine).toBeGreaterThan(0.999999);
    expect(same.greedyAgreement).toBe(1);
    for (const f of same.files) {
      expect(f.firstDivergence).toBeNull();
      expect(f.greedyIdentical).toBe(true);
      expect(f.candidateTokens).toEqual(f.baselineTokens);
      // One comparison per baseline prediction: each generated token (+ the EOS position if it stopped).
      expect(f.steps).toBeGreaterThanOrEqual(f.baselineTokens.length);
      expect(f.steps).toBeLessThanOrEqual(6);
    }

    expect(other.passed).toBe(false);
    expect(other.failures.join(' ')).toMatch(/other vs fp32: (top-1 agreement|mean logit cosine)/);
    expect(other.top1Agreement).toBeLessThan(0.9);
    expect(other.files[0].firstDivergence).toBe(0);
    expect(report.passed).toBe(false);
  });

  it('gives the same report when the baseline runs are split into groups (one model resident at a time)', async () => {
    const whole = await compareVariants({ modelDir: dir, variants: ['fp32', 'other'], files: FILES, maxNewTokens: 4, threads: 1 });
    // A 1-byte budget cuts a group after every file: base and candidate are reloaded per file.
    const split = await compareVariants({ modelDir: dir, variants: ['fp32', 'other'], files: FILES, maxNewTokens: 4, threads: 1, baselineBudgetBytes: 1 });
    expect(split).toEqual(whole);
    expect(split.comparisons[0].files.map((f) => f.file)).toEqual(FILES);
  });

  it('rejects fewer than two or duplicate variants', async () => {
    await expect(compareVariants({ modelDir: dir, variants: ['fp32'], files: FILES })).rejects.toThrow(/at least two/);
    await expect(compareVariants({ modelDir: dir, variants: ['fp32', 'fp32'], files: FILES })).rejects.toThrow(/duplicate/);
  });
});

describe('qwen3-onnx compare', () => {
  const run = (args: string[]): Promise<{ stdout: string; error?: unknown }> => runCommandResult(register, 'compare', args);


  it('prints the report and exits non-zero (UserError) below the thresholds', async () => {
    const ok = await run(['--model-dir', dir, '--variants', 'fp32,same', '--max-new-tokens', '3', '--threads', '1', FILES[1]]);
    expect(ok.error).toBeUndefined();
    expect(ok.stdout).toMatch(/^same vs fp32: top-1 100\.00% over \d+ steps, .* PASS$/m);
    const bad = await run(['--model-dir', dir, '--variants', 'fp32,other', '--max-new-tokens', '3', '--threads', '1', '--json', FILES[1]]);
    expect(bad.error).toBeInstanceOf(UserError);
    expect((bad.error as Error).message).toMatch(/other vs fp32: /);
    const report = JSON.parse(bad.stdout) as CompareReport;
    expect(report.passed).toBe(false);
    expect(report.comparisons[0].files[0].file).toBe(FILES[1]);
    // The loosest thresholds pass anything.
    const lenient = await run(['--model-dir', dir, '--variants', 'fp32,other', '--min-top1', '0', '--min-cosine', '-1', '--max-new-tokens', '2', FILES[1]]);
    expect(lenient.error).toBeUndefined();
    expect((await run(['--model-dir', dir, '--variants', 'fp32', FILES[1]])).error).toBeDefined();
    expect((await run(['--model-dir', dir, '--min-top1', '2', FILES[1]])).error).toBeDefined();
  });
});

describe('metrics', () => {
  it('cosine similarity and greedy agreement', () => {
    expect(cosineSimilarity(Float32Array.of(1, 2, 3), Float32Array.of(2, 4, 6))).toBeCloseTo(1, 12);
    expect(cosineSimilarity(Float32Array.of(1, 0), Float32Array.of(0, 1))).toBe(0);
    expect(cosineSimilarity(Float32Array.of(1, 0), Float32Array.of(-1, 0))).toBe(-1);
    expect(greedyAgreement([1, 2, 3], [1, 2, 3])).toBe(1);
    expect(greedyAgreement([1, 2, 3, 4], [1, 9, 3])).toBe(0.5);
    expect(greedyAgreement([], [])).toBe(1);
  });
});
