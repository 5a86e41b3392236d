import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/test-support.js';
import { DataType, loadModel } from '../common/onnx/index.js';
import { exactBf16 } from './bf16-conv-weights.js';
import { transformGraphs } from './transform.js';
import { randomFloats, removeTempDirs, tempDir } from './test-graphs.js';

afterAll(removeTempDirs);

/**
 * The tiny export's encoder quantised twice, identically but for the bf16 conv weights (the tiny
 * convs are a few KiB, so the threshold is 0 here; the real default is 1 MiB).
 */

let floatDir: string;
let plain: string;
let bf16: string;
let report: Awaited<ReturnType<typeof transformGraphs>>;

const quantize = { bits: 4 as const, blockSize: 32, accuracyLevel: 4, symmetric: false, exclude: [] };

beforeAll(async () => {
  floatDir = await tinyModelDir();
  const a = await tempDir('bf16-plain');
  const b = await tempDir('bf16-conv');
  plain = join(a, 'encoder.int4.onnx');
  bf16 = join(b, 'encoder.int4.onnx');
  const src = join(floatDir, 'encoder.onnx');
  await transformGraphs({ graphs: [{ src, dst: plain }], dataFile: join(a, 'w.data'), fuse: true, skipFusion: false, quantize, bf16ConvMinBytes: null, threads: 1 });
  report = await transformGraphs({ graphs: [{ src, dst: bf16 }], dataFile: join(b, 'w.data'), fuse: true, skipFusion: false, quantize, bf16ConvMinBytes: 0, threads: 1 });
}, 120_000);

async function encode(path: string, level: 'all' | 'disabled'): Promise<Float32Array> {
  const frames = 230;
  const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: level, intraOpNumThreads: 1 });
  try {
    const out = await s.run({ mel: new ort.Tensor('float32', randomFloats(128 * frames, 3, 1), [1, 128, frames]) });
    return out.audio_features.data as Float32Array;
  } finally { await s.release(); }
}

describe('bf16 conv weights (quantize)', () => {
  it('stores every Conv weight as a bfloat16 initializer behind a Cast, half the bytes', async () => {
    const m = await loadModel(bf16);
    const convs = m.graph.node.filter((n) => n.opType === 'Conv');
    expect(convs.length).toBeGreaterThan(0);
    expect(report.graphs[0].bf16Conv?.converted.length).toBe(convs.length);
    for (const c of convs) {
      const cast = m.graph.node.find((n) => n.output[0] === c.input[1]);
      expect(cast?.opType).toBe('Cast');
      const stored = m.graph.initializer.find((t) => t.name === cast?.input[0]);
      expect(stored?.dataType).toBe(DataType.BFLOAT16);
      expect(m.graph.initializer.some((t) => t.name === c.input[1])).toBe(false);
    }
    const saved = report.graphs[0].bf16Conv!.converted.reduce((s, c) => s + c.bytes, 0);
    const plainBytes = (await stat(join(plain, '..', 'w.data'))).size;
    const bf16Bytes = (await stat(join(bf16, '..', 'w.data'))).size;
    // The data file aligns each tensor (up to 64 bytes of padding apiece).
    expect(Math.abs(plainBytes - bf16Bytes - saved)).toBeLessThanOrEqual(64 * convs.length);
    expect(saved).toBeGreaterThan(0);
  });

  it('is lossless: onnxruntime gives bit-identical audio features, with graph optimisations on and off', async () => {
    for (const level of ['all', 'disabled'] as const) {
      const a = await encode(plain, level);
      const b = await encode(bf16, level);
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength)), level).toBe(true);
    }
  });

  it('converts only exact values', () => {
    const exact = new Float32Array([1, -2.5, 0.125, 3.0517578125e-5]);
    expect(exactBf16(new Uint8Array(exact.buffer))).not.toBeNull();
    expect(exactBf16(new Uint8Array(new Float32Array([1, 0.1]).buffer))).toBeNull();
  });
});
