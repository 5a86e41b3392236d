import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../common/onnx/index.js';
import { EMBED_TOKENS } from '../graph-builder/decoder.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { quantizeModelDir, QUANTIZE_DEFAULTS } from '../quantize/model-dir.js';
import { compareVariants } from './compare.js';
import { compareComponentsAlone, spliceLookup } from './component-effects.js';

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const FILES = [join(AUDIO, 'notld/5s_were_better_off_up_here.wav')];

let wholeDir: string;
let decodersDir: string;
const made: string[] = [];

async function copyModel(src: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qwen3-effects-'));
  made.push(dir);
  for (const f of await readdir(src)) await copyFile(join(src, f), join(dir, f));
  return dir;
}

beforeAll(async () => {
  const base = await tinyModelDir();
  wholeDir = await copyModel(base);
  decodersDir = await copyModel(base);
  await quantizeModelDir({ modelDir: wholeDir, ...QUANTIZE_DEFAULTS, preset: 'whole', exclude: [], threads: 1 });
  await quantizeModelDir({ modelDir: decodersDir, ...QUANTIZE_DEFAULTS, preset: 'decoders', exclude: [], threads: 1 });
}, 300_000);
afterAll(async () => { await Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))); });

const opts = { files: FILES, maxNewTokens: 4, threads: 1 };

describe('compare: each component alone', () => {
  it('the whole recipe reports the encoder, the lookup and the decoders alone, and leaves no file behind', async () => {
    const before = (await readdir(wholeDir)).sort();
    const r = await compareComponentsAlone({ modelDir: wholeDir, variant: 'int4', ...opts });
    expect(r.effects.map((e) => e.component)).toEqual(['encoder', 'embedding', 'decoders']);
    for (const e of r.effects) {
      expect(e.comparison.candidate).toBe(`int4 ${e.component} alone`);
      expect(e.comparison.steps).toBeGreaterThan(0);
      expect(e.comparison.meanCosine).toBeGreaterThan(0);
      expect(e.comparison.meanCosine).toBeLessThanOrEqual(1 + 1e-9);
    }
    expect((await readdir(wholeDir)).sort()).toEqual(before);
  });

  it('on a decoders-only recipe "decoders alone" is the variant itself: the same numbers as compare fp32,int4', async () => {
    const r = await compareComponentsAlone({ modelDir: decodersDir, variant: 'int4', ...opts });
    expect(r.effects.map((e) => e.component)).toEqual(['decoders']);
    const full = await compareVariants({ modelDir: decodersDir, variants: ['fp32', 'int4'], ...opts });
    const a = r.effects[0].comparison;
    const b = full.comparisons[0];
    expect([a.top1Agreement, a.meanCosine, a.minCosine, a.files[0].candidateTokens]).toEqual([b.top1Agreement, b.meanCosine, b.minCosine, b.files[0].candidateTokens]);
  });

  it('a spliced lookup is the donor\'s: float decoders + GatherBlockQuantized return the int4 rows, the rest unchanged', async () => {
    const floatInit = await loadModel(join(wholeDir, 'decoder_init.onnx'));
    const gather = floatInit.graph.node.find((n) => n.opType === 'Gather' && n.input[0] === EMBED_TOKENS)!;
    const spliced = spliceLookup(floatInit, await loadModel(join(wholeDir, 'decoder_init.int4.onnx')), gather.output[0]);
    const ops = spliced.graph.node.map((n) => n.opType);
    expect(ops).toContain('GatherBlockQuantized');
    expect(ops).not.toContain('MatMulNBits');
    // The float table stays for the lm_head (Gemm); the lookup no longer reads it.
    expect(spliced.graph.node.filter((n) => n.input.includes(EMBED_TOKENS)).map((n) => n.opType)).toEqual(['Gemm']);
  });
});
