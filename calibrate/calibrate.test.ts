import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, readTensorBytesSync, tensorBytes, readRangeSync } from '../common/onnx/index.js';
import { buildPrompt } from '../runtime/prompt.js';
import { Tokenizer } from '../runtime/tokenizer.js';
import { AudioEncoder } from './audio-features.js';
import { calibrateModelDir, listAudioFiles } from './calibrate.js';
import { modelIdentity } from './model-identity.js';
import { readStatsFile } from './stats-file.js';
import { tinyExportedModelDir } from './test-support.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const AUDIO = resolve(HERE, '../../shared/audio');
const CLIP = join(AUDIO, 'notld/5s_dont_worry_about_him.wav');
const H = 96;
const P = 'thinker.model';

let modelDir: string;
let out: string;
beforeAll(async () => {
  modelDir = await tinyExportedModelDir();
  out = await mkdtemp(join(tmpdir(), 'qwen3-onnx-calibrate-'));
});
afterAll(async () => { await rm(out, { recursive: true, force: true }); });

describe('calibrateModelDir', () => {
  it('runs encoder -> decoder_init -> greedy decoder_step on real clips and records every smoothable norm', async () => {
    const filesBefore = (await readdir(modelDir)).sort();
    const stats = join(out, 'stats.json');
    const r = await calibrateModelDir({ modelDir, audio: [join(AUDIO, 'jfk.wav'), CLIP], output: stats, maxNewTokens: 3 });
    expect(r).toMatchObject({ files: 2, norms: 7, decodePositions: 4 }); // 3 tokens: the prefill's and 2 steps', per file
    const s = await readStatsFile(stats);
    expect(s.model).toEqual(await modelIdentity(modelDir));
    expect(s.calibration.files.map((f) => f.name)).toEqual(['jfk.wav', '5s_dont_worry_about_him.wav']);
    expect(s.calibration.files.map((f) => f.decode_positions)).toEqual([2, 2]);
    const prefill = s.calibration.prefill_positions;
    expect(prefill).toBe(s.calibration.files.reduce((n, f) => n + f.prefill_positions, 0));
    expect(Object.keys(s.norms)).toEqual([
      `${P}.layers.0.input_layernorm.weight`, `${P}.layers.0.post_attention_layernorm.weight`,
      `${P}.layers.1.input_layernorm.weight`, `${P}.layers.1.post_attention_layernorm.weight`,
      `${P}.layers.2.input_layernorm.weight`, `${P}.layers.2.post_attention_layernorm.weight`,
      `${P}.norm.weight`,
    ]);
    // Layer norms see every prefill and decode position; the final norm only the logit positions.
    expect(s.norms[`${P}.layers.1.post_attention_layernorm.weight`].positions).toBe(prefill + 4);
    expect(s.norms[`${P}.norm.weight`]).toMatchObject({ positions: 2 + 4, linears: [`${P}.embed_tokens.weight`] });
    expect(s.norms[`${P}.layers.0.input_layernorm.weight`].linears).toEqual(
      ['k', 'q', 'v'].map((p) => `${P}.layers.0.self_attn.${p}_proj.weight`));
    for (const n of Object.values(s.norms)) {
      expect(n.mean_abs).toHaveLength(H);
      expect(Math.min(...n.mean_abs)).toBeGreaterThan(0);
    }
    // Nothing is written into the model directory.
    expect((await readdir(modelDir)).sort()).toEqual(filesBefore);
  });

  it('records exactly mean |RMSNorm(x)·γ| over the prefill (checked for layer 0 from the weights in float64)', async () => {
    const stats = join(out, 'prefill.json');
    await calibrateModelDir({ modelDir, audio: [CLIP], output: stats, maxNewTokens: 0 });
    const s = await readStatsFile(stats);
    const key = `${P}.layers.0.input_layernorm.weight`;

    // Independent: the decoder input is embed_tokens rows with the encoder's features spliced in.
    const config = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8'));
    const encoder = await AudioEncoder.open(modelDir, H);
    const { features, audioTokens } = await encoder.encodeFile(CLIP);
    await encoder.release();
    const prompt = buildPrompt(await Tokenizer.load(modelDir), { audioTokens });
    const init = await loadModel(join(modelDir, 'decoder_init.onnx'));
    const inits = new Map(init.model.graph!.initializer!.map((t) => [t.name!, t]));
    const gammaBytes = readTensorBytesSync(inits.get(key)!, init.path);
    const gamma = new Float32Array(gammaBytes.buffer.slice(gammaBytes.byteOffset, gammaBytes.byteOffset + gammaBytes.byteLength));
    const embed = tensorBytes(inits.get(`${P}.embed_tokens.weight`)!, init.path);
    if (embed.kind !== 'external') throw new Error('expected the embedding in decoder_weights.data');
    const feats = features.data as Float32Array;
    const sum = new Float64Array(H);
    prompt.ids.forEach((id, p) => {
      let x: Float32Array;
      if (p >= prompt.audioOffset && p < prompt.audioOffset + audioTokens) x = feats.subarray((p - prompt.audioOffset) * H, (p - prompt.audioOffset + 1) * H);
      else x = new Float32Array(readRangeSync(embed.file, embed.offset + id * H * 4, H * 4).buffer);
      let ms = 0;
      for (let c = 0; c < H; c++) ms += x[c] * x[c];
      const inv = 1 / Math.sqrt(ms / H + config.decoder.rms_norm_eps);
      for (let c = 0; c < H; c++) sum[c] += Math.abs(x[c] * inv * gamma[c]);
    });
    const expected = Array.from(sum, (v) => v / prompt.ids.length);
    expect(s.norms[key].positions).toBe(prompt.ids.length);
    const got = s.norms[key].mean_abs;
    const maxRel = Math.max(...expected.map((e, c) => Math.abs(got[c] - e) / e));
    expect(maxRel).toBeLessThan(1e-5);
  });

  it('writes the same bytes for the same inputs', async () => {
    const a = join(out, 'a.json');
    const b = join(out, 'b.json');
    await calibrateModelDir({ modelDir, audio: [CLIP], output: a, maxNewTokens: 2 });
    await calibrateModelDir({ modelDir, audio: [CLIP], output: b, maxNewTokens: 2 });
    expect(await readFile(a, 'utf8')).toBe(await readFile(b, 'utf8'));
  });

  it('refuses bad arguments with one-line errors', async () => {
    await expect(calibrateModelDir({ modelDir, audio: [], output: join(out, 'x.json') })).rejects.toThrow(/--audio: give at least one/);
    await expect(calibrateModelDir({ modelDir, audio: [join(AUDIO, 'nope.wav')], output: join(out, 'x.json') })).rejects.toThrow(/--audio: cannot read .*nope\.wav: no such file/);
    await expect(calibrateModelDir({ modelDir, audio: [CLIP], output: join(out, 'x.json'), maxNewTokens: -1 })).rejects.toThrow(/--max-new-tokens must be a non-negative integer/);
    await expect(calibrateModelDir({ modelDir: out, audio: [CLIP], output: join(out, 'x.json') })).rejects.toThrow(/config\.json/);
  });
});

describe('listAudioFiles', () => {
  it('expands directories recursively into sorted .wav files named relative to the argument', async () => {
    const files = await listAudioFiles([AUDIO, join(AUDIO, 'jfk.wav')]);
    expect(files[0]).toEqual({ path: join(AUDIO, 'jfk.wav'), name: 'jfk.wav' });
    expect(files.slice(1).every((f) => f.name.startsWith('notld/') && f.name.endsWith('.wav'))).toBe(true);
    expect(files.map((f) => f.name)).toEqual([...files.map((f) => f.name)].sort());
    expect(new Set(files.map((f) => f.path)).size).toBe(files.length); // jfk.wav once
  });
});
