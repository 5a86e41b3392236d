/**
 * Encoder benchmark (not a test): builds encoder.onnx for a preset's real shapes from
 * seeded random weights held in memory (audio tower only, no checkpoint on disk), then
 * times onnxruntime-node on random mels.
 *
 *   npx vite-node investigation/encoder-bench.ts -- [tiny|0.6b|1.7b] [seconds ...]
 *
 * Prints build time, encoder_weights.data size, and per audio length the median of 3 runs
 * (after one warm-up) and ms per second of audio. 100 mel frames = 1 s of audio.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { CheckpointConfigSchema, dimsFromConfig } from '../checkpoint/config.js';
import type { TensorInfo, TensorSource } from '../checkpoint/tensor-source.js';
import { Prng } from '../common/prng.js';
import { referenceWeightShapes } from '../fixtures/reference/weights.js';
import { PRESETS, checkpointConfigJson, isPresetName } from '../fixtures/presets.js';
import { buildEncoder, ENCODER_FILE, ENCODER_WEIGHTS_FILE } from '../graph-builder/encoder.js';

/** Audio-tower tensors as float32, generated on read (uniform, std 1/sqrt(fan_in); norms ~1). */
function syntheticAudioTower(shapes: Array<[string, number[]]>, seed: number): TensorSource {
  const infos = shapes
    .filter(([n]) => n.startsWith('thinker.audio_tower.'))
    .map(([name, shape]): TensorInfo => ({ name, dtype: 'F32', shape, file: '(memory)', offset: 0, byteLength: 4 * shape.reduce((a, b) => a * b, 1) }))
    .sort((x, y) => (x.name < y.name ? -1 : 1));
  const byName = new Map(infos.map((i) => [i.name, i]));
  const info = (name: string): TensorInfo => {
    const i = byName.get(name);
    if (!i) throw new Error(`synthetic checkpoint has no ${name}`);
    return i;
  };
  const readFloat32 = async (name: string): Promise<Float32Array> => {
    const { shape } = info(name);
    const rng = new Prng(seed + infos.indexOf(info(name)));
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = shape.length === 1 && name.endsWith('.weight') && !name.includes('conv');
    const std = shape.length === 1 ? 0.1 : 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
    return Float32Array.from({ length: n }, () => (isNorm ? 1 : 0) + Math.sqrt(3) * std * (2 * rng.next() - 1));
  };
  return {
    list: () => infos,
    has: (name) => byName.has(name),
    info,
    readFloat32,
    readFloat32Rows: async () => { throw new Error('not used by the encoder'); },
    readRaw: async (name) => new Uint8Array((await readFloat32(name)).buffer),
    close: async () => undefined,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => a !== '--');
  const presetName = args[0] ?? 'tiny';
  if (!isPresetName(presetName)) throw new Error(`unknown preset ${presetName}`);
  const seconds = args.length > 1 ? args.slice(1).map(Number) : [5, 30];
  const dims = dimsFromConfig(CheckpointConfigSchema.parse(checkpointConfigJson(PRESETS[presetName])));
  const dir = await mkdtemp(join(tmpdir(), 'encoder-bench-'));
  try {
    const t0 = performance.now();
    await buildEncoder({ tensors: syntheticAudioTower(referenceWeightShapes(dims), 1), dims, outputDir: dir });
    const buildMs = performance.now() - t0;
    const dataBytes = (await stat(join(dir, ENCODER_WEIGHTS_FILE))).size;
    console.log(`preset ${presetName}: build ${buildMs.toFixed(0)} ms, ${ENCODER_WEIGHTS_FILE} ${(dataBytes / 2 ** 20).toFixed(1)} MiB`);
    const session = await ort.InferenceSession.create(join(dir, ENCODER_FILE));
    const rng = new Prng(7);
    for (const s of seconds) {
      const frames = Math.round(s * 100);
      const mel = Float32Array.from({ length: dims.audio.numMelBins * frames }, () => rng.next() * 2.5 - 1);
      const feed = { mel: new ort.Tensor('float32', mel, [1, dims.audio.numMelBins, frames]) };
      await session.run(feed);
      const times: number[] = [];
      for (let k = 0; k < 3; k++) {
        const t = performance.now();
        await session.run(feed);
        times.push(performance.now() - t);
      }
      const median = times.sort((x, y) => x - y)[1];
      console.log(`  ${s} s audio (${frames} frames): ${median.toFixed(1)} ms median of 3, ${(median / s).toFixed(2)} ms per second of audio`);
    }
    await session.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
