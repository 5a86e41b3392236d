import { appendFile, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelIdentity } from './model-identity.js';
import { AWQ_DEFAULT_ALPHA, smoothingScales } from '../quantize/awq-scales.js';
import { readStatsFile, readStatsForModel, statsToJson, writeStatsFile, type StatsFile } from './stats-file.js';
import { copyModelDir, tinyExportedModelDir } from './test-support.js';

let copy: { dir: string; cleanup: () => Promise<void> };
let tmp: string;
beforeAll(async () => {
  copy = await copyModelDir(await tinyExportedModelDir());
  tmp = await mkdtemp(join(tmpdir(), 'qwen3-onnx-stats-'));
});
afterAll(async () => {
  await copy?.cleanup();
  await rm(tmp, { recursive: true, force: true });
});

const HEX = (c: string) => c.repeat(64);

function sample(model: StatsFile['model']): StatsFile {
  return {
    format: 'qwen3-onnx-activation-stats',
    version: 1,
    model,
    calibration: {
      max_new_tokens: 4, prefill_positions: 10, decode_positions: 3,
      files: [{ name: 'a.wav', sha256: HEX('a'), audio_tokens: 5, prefill_positions: 10, decode_positions: 3 }],
    },
    norms: {
      'thinker.model.norm.weight': { linears: ['thinker.model.embed_tokens.weight'], positions: 4, mean_abs: [0.1, 0.30000000000000004, 2] },
      'thinker.model.layers.0.input_layernorm.weight': { linears: ['v', 'q', 'k'], positions: 13, mean_abs: [1, 2, 3] },
    },
  };
}

const FAKE_MODEL = {
  config_sha256: HEX('1'), decoder_init_sha256: HEX('2'), decoder_step_sha256: HEX('3'),
  decoder_weights_bytes: 123, decoder_weights_sample_sha256: HEX('4'),
};

describe('stats.json', () => {
  it('round-trips with sorted keys and float32-rounded means, one line per mean_abs array', async () => {
    const file = join(tmp, 'rt.json');
    await writeStatsFile(file, sample(FAKE_MODEL));
    const text = await readFile(file, 'utf8');
    expect(text.indexOf('layers.0.input_layernorm')).toBeLessThan(text.indexOf('thinker.model.norm.weight'));
    expect(text).toContain('"mean_abs": [1,2,3]');
    const back = await readStatsFile(file);
    expect(back.norms['thinker.model.layers.0.input_layernorm.weight'].linears).toEqual(['k', 'q', 'v']);
    expect(back.norms['thinker.model.norm.weight'].mean_abs).toEqual([Math.fround(0.1), Math.fround(0.3), 2]);
    expect(statsToJson(back)).toBe(text);
  });

  const broken: [string, (s: Record<string, any>) => void, RegExp][] = [
    ['another format', (s) => { s.format = 'something'; }, /format: /],
    ['a negative mean', (s) => { s.norms['thinker.model.norm.weight'].mean_abs[1] = -1; }, /norms\.thinker\.model\.norm\.weight\.mean_abs\.1: /],
    ['no norms', (s) => { s.norms = {}; }, /norms: no norms recorded/],
    ['an unknown field', (s) => { s.extra = 1; }, /Unrecognized key/],
    ['a bad model hash', (s) => { s.model.config_sha256 = 'xyz'; }, /model\.config_sha256/],
  ];
  it.each(broken)('refuses %s naming the file and field', async (_what, mutate, message) => {
    const s = JSON.parse(statsToJson(sample(FAKE_MODEL)));
    mutate(s);
    const file = join(tmp, 'broken.json');
    await writeFile(file, JSON.stringify(s));
    await expect(readStatsFile(file)).rejects.toThrow(message);
    await expect(readStatsFile(file)).rejects.toThrow(file);
  });

  it('refuses a file that is not JSON or does not exist', async () => {
    await writeFile(join(tmp, 'garbage.json'), '{ nope');
    await expect(readStatsFile(join(tmp, 'garbage.json'))).rejects.toThrow(/garbage\.json: not valid JSON/);
    await expect(readStatsFile(join(tmp, 'missing.json'))).rejects.toThrow(/cannot read .*missing\.json: no such file/);
  });
});

describe('model identity', () => {
  it('accepts stats from the same model, also after quantize recorded a recipe in config.json', async () => {
    const file = join(tmp, 'same.json');
    await writeStatsFile(file, sample(await modelIdentity(copy.dir)));
    const cfgPath = join(copy.dir, 'config.json');
    const original = await readFile(cfgPath, 'utf8');
    const cfg = JSON.parse(original);
    cfg.quantization = { decoder_init: 'int4_rtn_block64_al4' };
    await writeFile(cfgPath, JSON.stringify(cfg, null, 4));
    try {
      await expect(readStatsForModel(file, copy.dir)).resolves.toBeDefined();
    } finally {
      await writeFile(cfgPath, original);
    }
  });

  it('refuses stats measured on another model, saying what differs', async () => {
    const file = join(tmp, 'other.json');
    await writeStatsFile(file, sample(await modelIdentity(copy.dir)));
    const cfgPath = join(copy.dir, 'config.json');
    const original = await readFile(cfgPath, 'utf8');
    await writeFile(cfgPath, original.replace('"rms_norm_eps": 0.000001', '"rms_norm_eps": 0.00001'));
    try {
      await expect(readStatsForModel(file, copy.dir)).rejects.toThrow(/activation statistics are from a different model than .*: config\.json differs .*run `qwen3-onnx calibrate --model-dir/);
    } finally {
      await writeFile(cfgPath, original);
    }
    // Same architecture and graphs, other weights: the sampled data hash tells them apart.
    const data = join(copy.dir, 'decoder_weights.data');
    const fh = await open(data, 'r+');
    try {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, 100);
      b[0] ^= 0xff;
      await fh.write(b, 0, 1, 100);
      await expect(readStatsForModel(file, copy.dir)).rejects.toThrow(/decoder_weights\.data contents differs/);
      b[0] ^= 0xff;
      await fh.write(b, 0, 1, 100);
    } finally {
      await fh.close();
    }
    await appendFile(data, Buffer.alloc(8));
    await expect(readStatsForModel(file, copy.dir)).rejects.toThrow(/decoder_weights\.data size differs \(\d+ recorded, \d+ here\)/);
  });
});

describe('smoothingScales', () => {
  it('computes (a / mean(a))^alpha clamped to [1e-5, 1e5]', () => {
    const a = [1, 2, 4, 9];
    const mean = 4;
    const s = smoothingScales(a, 0.5);
    a.forEach((v, i) => expect(s[i]).toBeCloseTo(Math.sqrt(v / mean), 12));
    expect(Array.from(smoothingScales(a, 0))).toEqual([1, 1, 1, 1]);
    expect(Array.from(smoothingScales([0, 1e12], 1))).toEqual([1e-5, 2]);
    expect(AWQ_DEFAULT_ALPHA).toBe(0.2);
  });

  it('refuses an alpha outside [0, 1]', () => {
    expect(() => smoothingScales([1, 2], 1.5)).toThrow(/--awq-alpha must be a number from 0 to 1, got 1.5/);
    expect(() => smoothingScales([1, 2], Number.NaN)).toThrow(/--awq-alpha/);
  });
});
