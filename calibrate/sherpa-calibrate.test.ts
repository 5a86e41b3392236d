import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register as registerCalibrate } from '../cli/calibrate.js';
import { register as registerQuantize } from '../cli/quantize.js';
import { runCommand } from '../cli/test-support.js';
import { tinyCheckpointDir, tinyModelDir } from '../fixtures/test-support.js';
import { exportModel } from '../graph-builder/export.js';
import { calibrateModelDir } from './calibrate.js';
import { identityDifference, modelIdentity } from './model-identity.js';
import { readStatsFile, type StatsFile } from './stats-file.js';

/**
 * calibrate on a sherpa-onnx layout directory, checked against the split layout's calibrate of the
 * same tiny checkpoint on the same clip. The split export compared is the all-logits one
 * (decoder_init computes every prompt position's logits, as decoder.onnx does), so even the final
 * norm sees the same positions; the default split export has the same norm keys.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIP = resolve(HERE, '../../shared/audio/notld/5s_dont_worry_about_him.wav');
const TOKENS = 4;

let scratch: string;
let sherpaDir: string;
let splitDir: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-onnx-sherpa-calibrate-'));
  sherpaDir = join(scratch, 'model');
  await exportModel({ model: await tinyCheckpointDir(), output: sherpaDir, layout: 'sherpa-onnx' });
  splitDir = await tinyModelDir({ allLogits: true });
}, 60_000);
afterAll(async () => { if (scratch) await rm(scratch, { recursive: true, force: true }); });

/** Largest |a - b| / b over every channel of every norm (keys and positions must agree). */
function maxRelativeDifference(a: StatsFile, b: StatsFile): number {
  let worst = 0;
  for (const [key, n] of Object.entries(b.norms)) {
    const m = a.norms[key].mean_abs;
    n.mean_abs.forEach((v, c) => { worst = Math.max(worst, Math.abs(m[c] - v) / v); });
  }
  return worst;
}

async function calibrate(modelDir: string, name: string, maxNewTokens: number): Promise<StatsFile> {
  const output = join(scratch, name);
  await calibrateModelDir({ modelDir, audio: [CLIP], output, maxNewTokens, threads: 1 });
  return readStatsFile(output);
}

describe('calibrate on a sherpa-onnx layout directory', () => {
  it('records the split calibrate\'s norms, positions and means for the same checkpoint and clip', async () => {
    const filesBefore = (await readdir(sherpaDir)).sort();
    for (const maxNewTokens of [0, TOKENS]) {
      const sherpa = await calibrate(sherpaDir, `sherpa-${maxNewTokens}.json`, maxNewTokens);
      const split = await calibrate(splitDir, `split-${maxNewTokens}.json`, maxNewTokens);
      expect(sherpa.model).toEqual(await modelIdentity(sherpaDir));
      expect(sherpa.model).toMatchObject({ layout: 'sherpa-onnx' });
      expect(sherpa.calibration).toEqual(split.calibration);
      if (maxNewTokens > 0) expect(sherpa.calibration.decode_positions).toBe(TOKENS - 1);
      expect(Object.keys(sherpa.norms)).toHaveLength(7);
      for (const [key, n] of Object.entries(split.norms)) {
        expect(sherpa.norms[key], key).toMatchObject({ linears: n.linears, positions: n.positions });
      }
      expect(Object.keys(sherpa.norms)).toEqual(Object.keys(split.norms));
      // Same weights through graphs from the same make-functions, computed in another order
      // (conv_frontend + masked encoder, attention over the cache buffers): float32 rounding only
      // (measured 4.7e-7 relative), so 1e-5, the split calibrate's own bound against float64
      // (calibrate.test.ts); a wrong position, row or token moves the means far more.
      expect(maxRelativeDifference(sherpa, split)).toBeLessThan(1e-5);
    }
    // The default split export (last-position logits only) has the same norm keys.
    const plain = await calibrate(await tinyModelDir(), 'split-plain.json', 0);
    const sherpa0 = await readStatsFile(join(scratch, 'sherpa-0.json'));
    expect(Object.keys(sherpa0.norms)).toEqual(Object.keys(plain.norms));
    expect((await readdir(sherpaDir)).sort()).toEqual(filesBefore);
  }, 60_000);

  it('calibrate then quantize --awq through the CLI; stats of the split model are refused in one line', async () => {
    const stats = join(scratch, 'cli-stats.json');
    await runCommand(registerCalibrate, 'calibrate', ['--model-dir', sherpaDir, '--audio', CLIP, '--max-new-tokens', '2', '--output', stats, '--quiet']);
    const out = await runCommand(registerQuantize, 'quantize', ['--model-dir', sherpaDir, '--awq', stats, '--awq-alpha', '0.5']);
    expect(out).toMatch(/\(int4_awq0\.5_rtn_block64_al4\)/);
    expect(out).toMatch(/AWQ alpha 0\.5: 7 norms, 16 weights smoothed/);
    const written = await stat(join(sherpaDir, 'decoder.int4.onnx'));

    const splitStats = join(scratch, 'split-0.json');
    const refused = runCommand(registerQuantize, 'quantize', ['--model-dir', sherpaDir, '--awq', splitStats]);
    await expect(refused).rejects.toThrow(/activation statistics are from a different model than .*: the statistics are of a split layout model directory, this is a sherpa-onnx layout one; run `qwen3-onnx calibrate/);
    await expect(refused).rejects.not.toThrow(/\n/);
    expect((await stat(join(sherpaDir, 'decoder.int4.onnx'))).mtimeMs).toBe(written.mtimeMs);

    // Another sherpa-onnx model: its decoder graph is named.
    const here = await modelIdentity(sherpaDir);
    if (!('layout' in here)) throw new Error('expected a sherpa-onnx identity');
    expect(identityDifference({ ...here, decoder_sha256: 'f'.repeat(64) }, here)).toMatch(/^decoder\.onnx differs \(ffffffffffff recorded, [0-9a-f]{12} here\)$/);
    expect(identityDifference({ ...here, decoder_weights_sample_sha256: 'f'.repeat(64) }, here)).toMatch(/^decoder\.data contents differs/);
    expect(identityDifference(here, here)).toBeNull();
  }, 60_000);
});
