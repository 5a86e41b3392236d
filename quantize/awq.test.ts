import { readFile, readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../common/hash.js';
import { EMBED_TOKENS, LM_HEAD } from '../graph-builder/decoder.js';
import { QUANTIZE_DEFAULTS, quantizeModelDir } from '../quantize/model-dir.js';
import { loadModel } from '../common/onnx/index.js';
import { EmbeddingTable } from '../runtime/session.js';
import { readStatsForModel } from '../calibrate/stats-file.js';
import { calibrateModelDir } from '../calibrate/calibrate.js';
import { audioEvalCases, compareLogits, type EvalCase, type LogitError } from '../investigation/logit-error.js';
import { copyModelDir, tinyExportedModelDir } from '../calibrate/test-support.js';
import { readAwqStats } from '../calibrate/stats-file.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const AUDIO = resolve(HERE, '../../shared/audio');
const EVAL_CLIPS = ['5s_dont_worry_about_him.wav', '5s_were_better_off_up_here.wav', '7s_i_wonder_what_happened.wav'];
const H = 96;

// The tiny fixture with 4 planted outlier channels (input_layernorm / post_attention_layernorm
// weights x20), calibrated on jfk.wav, evaluated on three other clips.
let model: { dir: string; cleanup: () => Promise<void> };
let stats: string;
let cases: EvalCase[];
let embeddings: EmbeddingTable;

beforeAll(async () => {
  model = await copyModelDir(await tinyExportedModelDir({ outlierChannels: 4 }));
  stats = join(model.dir, '..', 'stats.json');
  await calibrateModelDir({ modelDir: model.dir, audio: [join(AUDIO, 'jfk.wav')], output: stats, maxNewTokens: 8 });
  cases = await audioEvalCases(model.dir, EVAL_CLIPS.map((c) => join(AUDIO, 'notld', c)));
  embeddings = await EmbeddingTable.open(join(model.dir, 'embed_tokens.bin'), [151936, H], 'float16');
});
afterAll(async () => {
  await embeddings?.close();
  await model?.cleanup();
});

async function int4Error(awq: { stats: string; alpha: number } | null): Promise<LogitError> {
  await quantizeModelDir({ modelDir: model.dir, ...QUANTIZE_DEFAULTS, exclude: [], ...(awq ? { awq: await readAwqStats(awq.stats, model.dir, awq.alpha) } : {}) });
  const g = (suffix: string) => ({ init: join(model.dir, `decoder_init${suffix}.onnx`), step: join(model.dir, `decoder_step${suffix}.onnx`) });
  return compareLogits(g(''), g('.int4'), cases, { steps: 6, embeddings, hidden: H });
}

describe('quantize --awq on planted activation outliers', () => {
  it('alpha 0.2 cuts the int4-vs-fp32 logit error of plain RTN by a real margin', async () => {
    const rtn = await int4Error(null);
    const awq = await int4Error({ stats, alpha: 0.2 });
    expect(rtn.positions).toBe(3 * 7);
    // Measured 0.398 vs 0.271 (investigation/INVESTIGATION.md has the alpha sweep).
    expect(awq.meanRelL2).toBeLessThan(0.85 * rtn.meanRelL2);
  });

  it('gives lm_head its own quantised tensor, keeps the float embedding for the Gather, cleans up', async () => {
    const embedBefore = await sha256File(join(model.dir, 'embed_tokens.bin'));
    const r = await quantizeModelDir({ modelDir: model.dir, ...QUANTIZE_DEFAULTS, exclude: [], awq: await readAwqStats(stats, model.dir, 0.5) });
    expect(r.recipe).toBe('int4_awq0.5_rtn_block64_al4');
    expect(r.awq).toMatchObject({ alpha: 0.5, norms: 7, linears: 16, untied: [[EMBED_TOKENS, LM_HEAD]] });
    const cfg = JSON.parse(await readFile(join(model.dir, 'config.json'), 'utf8'));
    expect(cfg.quantization).toEqual({
      decoder_init: 'int4_awq0.5_rtn_block64_al4', decoder_step: 'int4_awq0.5_rtn_block64_al4',
      embedding: 'fp32', encoder: 'fp32', lm_head: 'int4_awq0.5_rtn_block64_al4', preset: 'decoders',
    });
    expect(await sha256File(join(model.dir, 'embed_tokens.bin'))).toBe(embedBefore);
    for (const g of ['decoder_init', 'decoder_step']) {
      const m = await loadModel(join(model.dir, `${g}.int4.onnx`));
      const nodes = m.model.graph!.node!;
      const head = nodes.find((n) => n.opType === 'MatMulNBits' && n.input![1].startsWith(LM_HEAD));
      expect(head, g).toBeDefined();
      const gathers = nodes.filter((n) => n.opType === 'Gather' && n.input![0] === EMBED_TOKENS);
      expect(gathers.length).toBe(g === 'decoder_init' ? 1 : 0);
    }
    // The smoothed temp graphs beside the originals are gone.
    expect((await readdir(model.dir)).filter((f) => f.includes('awq'))).toEqual([]);
    // Stats of this model are refused for the fixture without outliers (same shapes, other weights).
    await expect(readStatsForModel(stats, await tinyExportedModelDir())).rejects.toThrow(/different model.*decoder_weights\.data contents differs/);
  });
});
