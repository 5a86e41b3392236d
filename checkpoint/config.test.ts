import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { CheckpointConfigSchema, dimsFromConfig, readCheckpointConfig } from './config.js';
import { smallConfigJson } from './test-checkpoint.js';

let root: string;
let n = 0;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'q3o-cfg-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

async function dirWithConfig(text: string): Promise<string> {
  const d = join(root, `c${n++}`);
  await mkdir(d);
  await writeFile(join(d, 'config.json'), text);
  return d;
}

type Json = Record<string, unknown>;
const text = (cfg: Json) => cfg.thinker_config as Json;
const textCfg = (cfg: Json) => text(cfg).text_config as Json;
const audioCfg = (cfg: Json) => text(cfg).audio_config as Json;

async function expectConfigError(cfg: unknown, pattern: RegExp): Promise<void> {
  const d = await dirWithConfig(typeof cfg === 'string' ? cfg : JSON.stringify(cfg));
  const err = await readCheckpointConfig(d).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(UserError);
  expect((err as Error).message).toContain(join(d, 'config.json'));
  expect((err as Error).message).toMatch(pattern);
}

describe('checkpoint config.json', () => {
  it('tolerates unknown extra fields at every level', async () => {
    const cfg = smallConfigJson();
    audioCfg(cfg).future_audio_knob = 'x';
    textCfg(cfg).attention_dropout = 0;
    text(cfg).dtype = 'bfloat16';
    const parsed = await readCheckpointConfig(await dirWithConfig(JSON.stringify(cfg)));
    expect(parsed.thinker_config.text_config.hidden_size).toBe(10);
  });

  it('derives model dimensions', () => {
    const dims = dimsFromConfig(CheckpointConfigSchema.parse(smallConfigJson()));
    expect(dims.audio).toMatchObject({ chunkFrames: 100, windowTokens: 104, freqAfterConv: 2, downsampleHidden: 4 });
    expect(dims.text).toMatchObject({ vocab: 20, hidden: 10, heads: 2, kvHeads: 1, headDim: 4, tied: true });
    expect(dims.tokens).toEqual({ audio: 17, audioStart: 18, audioEnd: 19 });
  });

  it('rejects a missing needed field with its path', async () => {
    const cfg = smallConfigJson();
    delete textCfg(cfg).hidden_size;
    await expectConfigError(cfg, /thinker_config\.text_config\.hidden_size: /);
    const cfg2 = smallConfigJson();
    delete audioCfg(cfg2).d_model;
    await expectConfigError(cfg2, /thinker_config\.audio_config\.d_model: /);
    const cfg3 = smallConfigJson();
    delete text(cfg3).audio_token_id;
    await expectConfigError(cfg3, /thinker_config\.audio_token_id: /);
  });

  it('rejects a wrong-typed needed field with its path', async () => {
    const cfg = smallConfigJson();
    textCfg(cfg).hidden_size = '1024';
    await expectConfigError(cfg, /thinker_config\.text_config\.hidden_size: .*number/i);
    const cfg2 = smallConfigJson();
    audioCfg(cfg2).encoder_layers = 1.5;
    await expectConfigError(cfg2, /thinker_config\.audio_config\.encoder_layers: /);
    const cfg3 = smallConfigJson();
    textCfg(cfg3).tie_word_embeddings = 'yes';
    await expectConfigError(cfg3, /thinker_config\.text_config\.tie_word_embeddings: /);
  });

  it('rejects another model type', async () => {
    await expectConfigError({ ...smallConfigJson(), model_type: 'whisper' }, /model_type: /);
  });

  it('rejects malformed JSON and a missing file', async () => {
    await expectConfigError('{"model_type": ', /not valid JSON/);
    const d = join(root, 'empty');
    await mkdir(d);
    await expect(readCheckpointConfig(d)).rejects.toThrow(/cannot read .*config\.json: no such file or directory/);
  });
});
