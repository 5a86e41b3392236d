import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { writeCheckpointFiles } from '../fixtures/generate.js';
import { ALIGNER_IDS, PRESETS, checkpointConfigJson, hfCheckpointConfigJson } from '../fixtures/presets.js';
import { parseCheckpointConfig, dimsFromConfig } from './config.js';
import { expectedTensors } from './expected-tensors.js';
import { openCheckpoint } from './open-checkpoint.js';
import { hfNameOf, originalNameOf, storedName } from './tensor-names.js';

/** The forced aligner's checkpoint: config fields, the head's shape and -hf name (shared/ALIGNER.md). */

type Json = Record<string, unknown>;
let root: string;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'q3o-aligner-ckpt-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

const parse = (cfg: Json) => parseCheckpointConfig(JSON.stringify(cfg), 'config.json');
const parseError = (cfg: Json): string => {
  try { parse(cfg); } catch (err) { expect(err).toBeInstanceOf(UserError); return (err as Error).message; }
  throw new Error('config was accepted');
};

describe('forced-aligner config.json', () => {
  it('both layouts give the aligner dims: classify_num, the timestamp token, 80 ms classes, an untied 152064-row embedding', () => {
    for (const cfg of [checkpointConfigJson(PRESETS['aligner-0.6b']), hfCheckpointConfigJson(PRESETS['aligner-0.6b'])]) {
      const dims = dimsFromConfig(parse(cfg).config);
      expect(dims.aligner).toEqual({ classifyNum: 5000, timestampTokenId: 151705, segmentMs: 80 });
      expect(dims.text).toMatchObject({ vocab: 152064, hidden: 1024, layers: 28, tied: false });
      expect(dims.audio).toMatchObject({ layers: 24, dModel: 1024, heads: 16, ffnDim: 4096, outputDim: 1024 });
      expect(expectedTensors(dims).get('thinker.lm_head.weight')).toEqual([5000, 1024]);
      expect(expectedTensors(dims).get('thinker.model.embed_tokens.weight')).toEqual([152064, 1024]);
    }
  });

  it('an ASR config is not an aligner, -hf ones included (they carry timestamp_token_id too)', () => {
    for (const cfg of [checkpointConfigJson(PRESETS.tiny), hfCheckpointConfigJson(PRESETS.tiny)]) {
      expect(cfg.timestamp_token_id ?? ALIGNER_IDS.timestamp).toBe(151705);
      expect(dimsFromConfig(parse(cfg).config).aligner).toBeUndefined();
    }
  });

  it('an -hf config with a top-level model_type "qwen3_forced_aligner" is an aligner too', () => {
    const cfg = { ...hfCheckpointConfigJson(PRESETS['aligner-tiny']), model_type: 'qwen3_forced_aligner' };
    expect(dimsFromConfig(parse(cfg).config).aligner?.classifyNum).toBe(5000);
  });

  it('refuses an aligner config without classify_num, timestamp_token_id or timestamp_segment_time, naming the field', () => {
    const base = checkpointConfigJson(PRESETS['aligner-tiny']);
    const thinker = base.thinker_config as Json;
    const { classify_num: _c, ...noClassify } = thinker;
    expect(parseError({ ...base, thinker_config: noClassify })).toMatch(/^config\.json: thinker_config\.classify_num: missing/);
    const { timestamp_token_id: _t, ...noStamp } = base;
    expect(parseError(noStamp)).toMatch(/^config\.json: timestamp_token_id: missing/);
    const { timestamp_segment_time: _s, ...noSegment } = base;
    expect(parseError(noSegment)).toMatch(/^config\.json: timestamp_segment_time: missing/);
    const hf = hfCheckpointConfigJson(PRESETS['aligner-tiny']);
    const { timestamp_segment_time: _h, ...hfNoSegment } = hf;
    expect(parseError(hfNoSegment)).toMatch(/^config\.json: timestamp_segment_time: missing/);
  });

  it('refuses a tied aligner and a timestamp token outside the vocabulary', () => {
    const base = checkpointConfigJson(PRESETS['aligner-tiny']);
    const thinker = base.thinker_config as Json;
    const tied = { ...base, thinker_config: { ...thinker, text_config: { ...(thinker.text_config as Json), tie_word_embeddings: true } } };
    expect(parseError(tied)).toMatch(/thinker_config\.text_config\.tie_word_embeddings: true, but the forced aligner/);
    expect(parseError({ ...base, timestamp_token_id: 152064 })).toMatch(/^config\.json: timestamp_token_id: 152064 is outside the vocabulary/);
  });
});

describe('forced-aligner tensor names', () => {
  it('the head is score.* in -hf (aligner) and lm_head.* (ASR); both map back to thinker.lm_head.*', () => {
    expect(hfNameOf('thinker.lm_head.weight', 'forced_aligner')).toBe('score.weight');
    expect(hfNameOf('thinker.lm_head.weight')).toBe('lm_head.weight');
    expect(hfNameOf('thinker.model.embed_tokens.weight', 'forced_aligner')).toBe('model.language_model.embed_tokens.weight');
    expect(originalNameOf('score.weight')).toBe('thinker.lm_head.weight');
    expect(originalNameOf('lm_head.weight')).toBe('thinker.lm_head.weight');
    expect(storedName('thinker.lm_head.weight', 'hf', 'forced_aligner')).toBe('score.weight');
  });

  it('opens both fixture formats to the same tensors, and names a wrong head as the checkpoint stores it', async () => {
    const dirs = { original: join(root, 'orig'), hf: join(root, 'hf') };
    for (const format of ['original', 'hf'] as const) await writeCheckpointFiles(await mkdirp(dirs[format]), { preset: 'aligner-tiny', format });
    const hfHeader = await readFile(join(dirs.hf, 'model.safetensors'));
    expect(hfHeader.subarray(0, 20000).toString('latin1')).toContain('"score.weight"');
    const heads: Float32Array[] = [];
    for (const format of ['original', 'hf'] as const) {
      const ck = await openCheckpoint(dirs[format]);
      try {
        expect(ck.format).toBe(format);
        expect(ck.dims.aligner?.classifyNum).toBe(5000);
        expect(ck.tensors.info('thinker.lm_head.weight').shape).toEqual([5000, 96]);
        heads.push(await ck.tensors.readFloat32('thinker.lm_head.weight'));
      } finally {
        await ck.tensors.close();
      }
    }
    expect(Buffer.from(heads[0].buffer).equals(Buffer.from(heads[1].buffer))).toBe(true);

    // classify_num 4000 while score.weight holds 5000 rows: the message names score.weight.
    const cfgPath = join(dirs.hf, 'config.json');
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Json;
    await writeFile(cfgPath, JSON.stringify({ ...cfg, classify_num: 4000 }));
    const err = await openCheckpoint(dirs.hf).then(() => undefined, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(UserError);
    expect(err?.message).toBe(`${dirs.hf}: tensor score.weight: expected shape [4000,96], found [5000,96]`);
  });
});

async function mkdirp(d: string): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(d, { recursive: true });
  return d;
}
