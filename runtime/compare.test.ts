import { copyFile, link, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UserError } from '../common/errors.js';
import { register } from '../cli/compare.js';
import { runCommandResult } from '../cli/test-support.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { quantizeModelDir, QUANTIZE_DEFAULTS } from '../quantize/model-dir.js';
import { loadAudio } from './audio.js';
import { compareVariants, cosineSimilarity, greedyAgreement, type CompareReport, type FileComparison } from './compare.js';
import { greedyDecode, runEncoder } from './decode.js';
import { openOrtGraph, type OpenGraph } from './graph-stage.js';
import { logMelSpectrogram } from './mel.js';
import { buildPrompt } from './prompt.js';
import { AsrModel } from './session.js';

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
let quantized: string;

/** Hard link (onnxruntime refuses external data that resolves outside the graph's folder), or copy. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  await link(from, to).catch(() => copyFile(from, to));
}

/**
 * A model directory with four variants: fp32 (the tiny export), `same` (the same graphs
 * under variant names), `other` (decoder graphs of a differently seeded export, with their
 * own decoder_weights.other.data) and int4 (the export quantized); all fall back to the fp32 encoder.
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
  await linkOrCopy(join(otherSeed, 'decoder_weights.data'), join(dir, 'decoder_weights.other.data'));
  // int4: quantized in a private copy (the fixture cache is shared), its outputs linked in.
  quantized = await mkdtemp(join(tmpdir(), 'qwen3-compare-int4-'));
  for (const f of ['decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data', 'config.json']) await copyFile(join(base, f), join(quantized, f));
  await quantizeModelDir({ modelDir: quantized, ...QUANTIZE_DEFAULTS, bits: 4, exclude: [], threads: 1 });
  for (const f of ['decoder_init.int4.onnx', 'decoder_step.int4.onnx', 'decoder_weights.int4.data']) await linkOrCopy(join(quantized, f), join(dir, f));
}, 300_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  if (quantized) await rm(quantized, { recursive: true, force: true });
});

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i += 1) if (x[i] > x[best]) best = i;
  return best;
}

interface WholeModelFile { baselineTokens: number[]; candidateTokens: number[]; agree: boolean[]; cosines: number[] }

/**
 * The comparison as it was before it ran one graph at a time: both variants loaded whole
 * (AsrModel, the pre-packing each had), every file decoded with greedyDecode, baseline rows
 * kept and the candidate teacher-forced on them, then decoded on its own.
 */
async function wholeModelComparison(baseline: string, candidate: string, files: string[], maxNewTokens: number): Promise<WholeModelFile[]> {
  const base = await AsrModel.load(dir, { variant: baseline, threads: 1, prepack: baseline !== 'fp32' });
  const cand = await AsrModel.load(dir, { variant: candidate, threads: 1, prepack: candidate !== 'fp32' });
  try {
    const out: WholeModelFile[] = [];
    for (const file of files) {
      const mel = logMelSpectrogram((await loadAudio(file)).samples);
      const baseFeatures = await runEncoder(base, mel);
      const prompt = buildPrompt(base.tokenizer, { audioTokens: baseFeatures.dims[1] });
      const rows: Float32Array[] = [];
      const b = await greedyDecode(base, prompt, baseFeatures, { maxNewTokens, onLogits: (_, row) => rows.push(row.slice()) });
      const candFeatures = await runEncoder(cand, mel);
      const agree: boolean[] = [];
      const cosines: number[] = [];
      await greedyDecode(cand, prompt, candFeatures, {
        maxNewTokens: rows.length, forcedTokens: [...b.tokens, 0].slice(0, rows.length),
        onLogits: (n, row) => { agree.push(argmax(rows[n]) === argmax(row)); cosines.push(cosineSimilarity(rows[n], row)); },
      });
      const own = await greedyDecode(cand, prompt, candFeatures, { maxNewTokens });
      out.push({ baselineTokens: b.tokens, candidateTokens: own.tokens, agree, cosines });
    }
    return out;
  } finally {
    await base.release();
    await cand.release();
  }
}

/** An OpenGraph that records every open and close and how many graphs were open at once. */
function recordingOpener(): { open: OpenGraph; events: string[]; maxOpen: () => number; openNow: () => number } {
  const events: string[] = [];
  let openNow = 0;
  let maxOpen = 0;
  const open: OpenGraph = async (path, o) => {
    const session = await openOrtGraph(path, o);
    openNow += 1;
    maxOpen = Math.max(maxOpen, openNow);
    events.push(`open ${basename(path)}${o.prepack ? ' prepacked' : ''}`);
    return {
      run: (feeds) => session.run(feeds),
      release: async () => { await session.release(); openNow -= 1; events.push(`close ${basename(path)}`); },
    };
  };
  return { open, events, maxOpen: () => maxOpen, openNow: () => openNow };
}

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

  it('gives the metrics of the whole-model comparison, graph by graph (fp32 vs int4 and vs other)', async () => {
    for (const candidate of ['int4', 'other']) {
      const report = await compareVariants({ modelDir: dir, variants: ['fp32', candidate], files: FILES, maxNewTokens: 5, threads: 1 });
      const whole = await wholeModelComparison('fp32', candidate, FILES, 5);
      const files: FileComparison[] = report.comparisons[0].files;
      expect(files.map((f) => f.file)).toEqual(FILES);
      for (const [i, f] of files.entries()) {
        const w = whole[i];
        expect(f.baselineTokens).toEqual(w.baselineTokens);
        expect(f.candidateTokens).toEqual(w.candidateTokens);
        expect(f.steps).toBe(w.agree.length);
        expect(f.top1Agreement).toBe(w.agree.filter(Boolean).length / w.agree.length);
        expect(f.firstDivergence).toBe(w.agree.includes(false) ? w.agree.indexOf(false) : null);
        expect(f.meanCosine).toBe(w.cosines.reduce((a, b) => a + b, 0) / w.cosines.length);
        expect(f.minCosine).toBe(Math.min(...w.cosines));
      }
      // The two candidates are not trivially equal to fp32: int4 rounds, other is another model.
      expect(files.some((f) => f.meanCosine < 1)).toBe(true);
    }
  }, 120_000);

  it('never holds two graphs at once, and releases each one also when a run fails', async () => {
    const rec = recordingOpener();
    const report = await compareVariants({ modelDir: dir, variants: ['fp32', 'int4'], files: FILES, maxNewTokens: 3, threads: 1, openGraph: rec.open });
    expect(report.comparisons[0].files).toHaveLength(2);
    expect(rec.maxOpen()).toBe(1);
    expect(rec.openNow()).toBe(0);
    // Both files in one group: each graph opens once per variant, the baseline's before the candidate's.
    expect(rec.events).toEqual([
      'open encoder.onnx', 'close encoder.onnx', 'open decoder_init.onnx', 'close decoder_init.onnx', 'open decoder_step.onnx', 'close decoder_step.onnx',
      'open encoder.onnx', 'close encoder.onnx', 'open decoder_init.int4.onnx prepacked', 'close decoder_init.int4.onnx',
      'open decoder_step.int4.onnx prepacked', 'close decoder_step.int4.onnx',
    ]);

    // A 1-byte budget: one group per file, still one graph at a time.
    const split = recordingOpener();
    await compareVariants({ modelDir: dir, variants: ['fp32', 'int4', 'same'], files: FILES, maxNewTokens: 2, threads: 1, openGraph: split.open, baselineBudgetBytes: 1 });
    expect(split.maxOpen()).toBe(1);
    expect(split.events.filter((e) => e.startsWith('open'))).toHaveLength(2 * 3 * 3);

    // A failing graph is released before the error comes out.
    const failing = recordingOpener();
    const breakStep: OpenGraph = async (path, o) => {
      const s = await failing.open(path, o);
      return path.endsWith('decoder_step.int4.onnx') ? { run: () => Promise.reject(new Error('boom')), release: () => s.release() } : s;
    };
    await expect(compareVariants({ modelDir: dir, variants: ['fp32', 'int4'], files: FILES, maxNewTokens: 3, threads: 1, openGraph: breakStep })).rejects.toThrow('boom');
    expect(failing.openNow()).toBe(0);
    expect(failing.maxOpen()).toBe(1);
  }, 120_000);

  it('refuses a variant without its own decoder graphs, naming the missing file, before opening any graph', async () => {
    const rec = recordingOpener();
    await expect(compareVariants({ modelDir: dir, variants: ['fp32', 'int8'], files: FILES, openGraph: rec.open }))
      .rejects.toThrow(new UserError(`${dir}: variant int8 has no decoder_init.int8.onnx (run quantize first)`));
    expect(rec.events).toEqual([]);
  });

  it('reports an unreadable audio file in one line and compares the others', async () => {
    const bad = join(dir, 'not-audio.wav');
    await writeFile(bad, 'this is not a WAV file\n');
    const missing = join(dir, 'absent.wav');
    const seen: string[] = [];
    const report = await compareVariants({
      modelDir: dir, variants: ['fp32', 'same'], files: [bad, FILES[1], missing], maxNewTokens: 2, threads: 1,
      onFileError: (file, message) => seen.push(`${file}|${message}`),
    });
    expect(report.fileErrors.map((e) => e.file)).toEqual([bad, missing]);
    for (const e of report.fileErrors) {
      expect(e.message).toContain(e.file);
      expect(e.message).not.toContain('\n');
    }
    expect(seen).toEqual(report.fileErrors.map((e) => `${e.file}|${e.message}`));
    expect(report.comparisons[0].files.map((f) => f.file)).toEqual([FILES[1]]);
    expect(report.comparisons[0].passed).toBe(true);
    expect(report.passed).toBe(false);
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

  it('prints one line per unreadable file, compares the rest, and exits non-zero at the end', async () => {
    const bad = join(dir, 'broken.wav');
    await writeFile(bad, Buffer.from('RIFF\x00\x00\x00\x00WAVEjunk'));
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { lines.push(String(chunk)); return true; });
    let result: { stdout: string; error?: unknown };
    try {
      result = await run(['--model-dir', dir, '--variants', 'fp32,same', '--max-new-tokens', '2', '--threads', '1', bad, FILES[1]]);
    } finally {
      spy.mockRestore();
    }
    const fileLines = lines.join('').split('\n').filter((l) => l.includes(bad));
    expect(fileLines).toHaveLength(1);
    expect(fileLines[0]).toMatch(new RegExp(`^qwen3-onnx: error: ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
    expect(result.stdout).toMatch(/^same vs fp32: top-1 100\.00% over \d+ steps, .* PASS$/m);
    expect(result.stdout).toContain(FILES[1]);
    expect(result.error).toBeInstanceOf(UserError);
    expect((result.error as Error).message).toBe('compare: 1 of 2 files could not be compared (see the lines above)');
  });

  it('refuses an absent variant in one line', async () => {
    const r = await run(['--model-dir', dir, '--variants', 'fp32,int8', FILES[1]]);
    expect(r.error).toBeInstanceOf(UserError);
    expect((r.error as Error).message).toBe(`${dir}: variant int8 has no decoder_init.int8.onnx (run quantize first)`);
    expect(r.stdout).toBe('');
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
