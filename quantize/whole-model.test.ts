import { createHash } from 'node:crypto';
import { access, copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OutputConfigSchema } from '../model-dir/config.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import {
  DataType, encodeModel, loadModel, onnx as OnnxProto, readTensorBytesSync, tensorBytes, type LoadedModel,
} from '../common/onnx/index.js';
import { EMBED_TOKENS } from '../graph-builder/decoder.js';
import { quantizeModelDir, QUANTIZE_DEFAULTS } from './model-dir.js';
import { checkMatMulNBitsNodes } from './nbits-node-check.js';
import { rtnDequantize } from './rtn.js';
import { randomFloats, removeTempDirs, tempDir } from './test-graphs.js';

afterAll(removeTempDirs);

/**
 * `quantize --preset whole` on the tiny fixture export (encoder 3 layers d_model 64; decoder 3
 * layers hidden 96, vocab 151936): int4 encoder, int4 decoders, and the token lookup reading the
 * tied lm_head's int4 table. Hidden 96 is not a multiple of block 64, so the lookup's rows carry
 * the last block's padding and a Slice (gather-block-quantized.ts) — the real models' 1024/2048
 * are multiples.
 */

const H = 96;
const V = 151936;
const FILES = ['encoder.onnx', 'encoder_weights.data', 'decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data', 'config.json'];

let floatDir: string;
let wholeDir: string;
let result: Awaited<ReturnType<typeof quantizeModelDir>>;

async function workingCopy(src: string): Promise<string> {
  const dir = await tempDir('whole');
  for (const f of FILES) await copyFile(join(src, f), join(dir, f));
  return dir;
}

const quantizeWhole = (dir: string) => quantizeModelDir({ modelDir: dir, ...QUANTIZE_DEFAULTS, preset: 'whole', exclude: [], threads: 2 });

beforeAll(async () => {
  floatDir = await tinyModelDir({ allLogits: true });
  wholeDir = await workingCopy(floatDir);
  result = await quantizeWhole(wholeDir);
}, 300_000);

async function run(path: string, feeds: Record<string, ort.Tensor>) {
  const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  try { return await s.run(feeds); } finally { await s.release(); }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const initOf = (m: LoadedModel, name: string) => {
  const t = m.graph.initializer.find((x) => x.name === name);
  if (!t) throw new Error(`no initializer ${name}`);
  return t;
};

function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0; let na = 0; let nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return d / Math.sqrt(na * nb);
}

describe('quantize --preset whole on the tiny fixture export', () => {
  it('writes the int4 encoder beside the int4 decoders and states every component in config.json', async () => {
    expect(result.files).toEqual([
      'encoder.int4.onnx', 'encoder_weights.int4.data', 'decoder_init.int4.onnx', 'decoder_step.int4.onnx', 'decoder_weights.int4.data', 'config.json',
    ]);
    expect(result.sharedEmbedding).toBe(true);
    const cfg = OutputConfigSchema.parse(JSON.parse(await readFile(join(wholeDir, 'config.json'), 'utf8')));
    expect(cfg.quantization).toEqual({
      decoder_init: 'int4_rtn_block64_al4', decoder_step: 'int4_rtn_block64_al4', embedding: 'int4_rtn_block64_gather',
      encoder: 'int4_rtn_block64_al4', lm_head: 'int4_rtn_block64_al4', preset: 'whole',
    });
  });

  it('every encoder linear is a MatMulNBits equal to float64 math on its dequantised weight; the Conv2d stem stays float', async () => {
    const q = await loadModel(join(wholeDir, 'encoder.int4.onnx'));
    const f = await loadModel(join(floatDir, 'encoder.onnx'));
    const floatLinears = f.graph.node.filter((n) => n.opType === 'MatMul' && f.graph.initializer.some((t) => t.name === n.input[1]));
    // 3 layers x (q, k, v, out, fc1, fc2) + conv_out + proj1 + proj2.
    expect(floatLinears.length).toBe(3 * 6 + 3);
    const ops = q.graph.node.map((n) => n.opType);
    expect(ops.filter((o) => o === 'MatMul').length).toBe(f.graph.node.filter((n) => n.opType === 'MatMul').length - floatLinears.length);
    expect(result.encoder?.weightsQuantized).toBe(floatLinears.length);
    const convs = q.graph.node.filter((n) => n.opType === 'Conv');
    expect(convs.length).toBe(3);
    for (const c of convs) expect(initOf(q, c.input[1]).dataType).toBe(DataType.FLOAT);
    for (const t of q.graph.initializer) {
      const b = tensorBytes(t, q.path);
      if (b.kind === 'external') expect(b.file).toBe(join(wholeDir, 'encoder_weights.int4.data'));
    }
    const checks = await checkMatMulNBitsNodes(join(wholeDir, 'encoder.int4.onnx'), join(floatDir, 'encoder.onnx'));
    // q|k|v packed into one node per layer.
    expect(checks.length).toBe(3 * 4 + 3);
    for (const c of checks) {
      expect([c.bits, c.blockSize, c.accuracyLevel], c.node).toEqual([4, 64, 4]);
      expect(c.worstSteps, c.node).toBeLessThanOrEqual(0.5 + 1e-5);
      expect(c.worstRel, c.node).toBeLessThanOrEqual(1e-5);
    }
  });

  it('the int4 encoder keeps its inputs and outputs and agrees with fp32 (cosine of audio_features)', async () => {
    // Two chunks of random mel frames: 130 frames -> 13 + 4 tokens.
    const T = 130;
    const mel = new ort.Tensor('float32', randomFloats(128 * T, 5, 0.5), [1, 128, T]);
    const a = await run(join(floatDir, 'encoder.onnx'), { mel });
    const b = await run(join(wholeDir, 'encoder.int4.onnx'), { mel });
    expect(b.audio_features.dims).toEqual(a.audio_features.dims);
    expect(a.audio_features.dims).toEqual([1, 17, H]);
    // Measured 0.973 on this random-weight fixture (every linear int4); a wrong layout or scale gives ~0.
    expect(cosine(b.audio_features.data as Float32Array, a.audio_features.data as Float32Array)).toBeGreaterThan(0.95);
  });

  it('decoder_init looks tokens up with GatherBlockQuantized on the lm_head\'s int4 table: the same bytes, stored once', async () => {
    const init = await loadModel(join(wholeDir, 'decoder_init.int4.onnx'));
    const step = await loadModel(join(wholeDir, 'decoder_step.int4.onnx'));
    const ops = init.graph.node.map((n) => n.opType);
    expect(ops).toContain('GatherBlockQuantized');
    expect(init.graph.node.some((n) => n.opType === 'Gather' && n.input[0] === EMBED_TOKENS)).toBe(false);
    // No float table left anywhere: decoder_weights.int4.data holds no V x H float32 tensor.
    for (const m of [init, step]) expect(m.graph.initializer.some((t) => t.name === EMBED_TOKENS)).toBe(false);
    const gbq = init.graph.node.find((n) => n.opType === 'GatherBlockQuantized')!;
    const headOf = (m: LoadedModel) => m.graph.node.find((n) => n.opType === 'MatMulNBits' && n.input[1].startsWith(EMBED_TOKENS))!;
    const head = headOf(init);
    expect([gbq.input[2], gbq.input[3]]).toEqual([head.input[2], head.input[3]]);
    const rows = tensorBytes(initOf(init, gbq.input[0]), init.path);
    expect(tensorBytes(initOf(init, head.input[1]), init.path)).toEqual(rows);
    expect(tensorBytes(initOf(step, headOf(step).input[1]), step.path)).toEqual(rows);

    // Hash check over the data file: the table's bytes occur in exactly one tensor range.
    const file = new Uint8Array(await readFile(join(wholeDir, 'decoder_weights.int4.data')));
    const ranges = new Map<string, [number, number]>();
    for (const m of [init, step]) for (const t of m.graph.initializer) {
      const b = tensorBytes(t, m.path);
      if (b.kind === 'external') ranges.set(`${b.offset}:${b.length}`, [b.offset, b.length]);
    }
    const tableHash = sha(readTensorBytesSync(initOf(init, gbq.input[0]), init.path));
    const hashes = [...ranges.values()].map(([o, l]) => sha(file.subarray(o, o + l)));
    expect(hashes.filter((h) => h === tableHash)).toHaveLength(1);
    expect(new Set(hashes).size).toBe(hashes.length);
    // And the whole file is no bigger than its distinct tensors (plus alignment padding).
    const distinct = [...ranges.values()].reduce((s, [, l]) => s + l, 0);
    expect(file.byteLength).toBeLessThan(distinct + 64 * ranges.size);

    // The lookup alone (with its Slice) returns exactly the dequantised rows the lm_head multiplies by.
    const names = new Set([gbq.input[0], gbq.input[2], gbq.input[3]]);
    const slice = init.graph.node.find((n) => n.opType === 'Slice' && n.input[0] === gbq.output[0]);
    expect(slice).toBeDefined();
    for (const i of slice!.input.slice(1)) names.add(i);
    const lookup = OnnxProto.ModelProto.create({
      irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
      graph: {
        name: 'lookup', node: [{ ...gbq, input: [gbq.input[0], 'ids', ...gbq.input.slice(2)] }, slice!],
        input: [{ name: 'ids', type: { tensorType: { elemType: DataType.INT64, shape: { dim: [{ dimValue: 1 }, { dimValue: 4 }] } } } }],
        output: [{ name: slice!.output[0], type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: 1 }, { dimValue: 4 }, { dimValue: H }] } } } }],
        initializer: init.graph.initializer.filter((t) => names.has(t.name)),
      },
    });
    const path = join(wholeDir, 'lookup-check.onnx');
    await writeFile(path, encodeModel(lookup));
    const ids = [0, 151643, 7, V - 1];
    const got = (await run(path, { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 4]) }))[slice!.output[0]].data as Float32Array;
    const sc = readTensorBytesSync(initOf(init, head.input[2]), init.path);
    const w = rtnDequantize({
      B: readTensorBytesSync(initOf(init, head.input[1]), init.path),
      scales: new Float32Array(sc.buffer.slice(sc.byteOffset, sc.byteOffset + sc.byteLength)),
      zeroPoints: readTensorBytesSync(initOf(init, head.input[3]), init.path),
    }, H, V, { bits: 4, blockSize: 64, symmetric: false });
    for (const [s, id] of ids.entries()) {
      const want = Array.from({ length: H }, (_, k) => w[k * V + id]);
      expect(Array.from(got.subarray(s * H, (s + 1) * H))).toEqual(want);
    }
  });

  it('whole-model int4 decoder_init agrees with fp32 about as well as the decoders-only recipe (teacher-forced top-1)', async () => {
    const decodersDir = await workingCopy(floatDir);
    await quantizeModelDir({ modelDir: decodersDir, ...QUANTIZE_DEFAULTS, preset: 'decoders', exclude: [], threads: 2 });
    const seq = 64;
    const agree = { whole: 0, decoders: 0, total: 0 };
    for (const seed of [1, 2]) {
      const ids = new BigInt64Array(seq);
      let x = seed;
      for (let i = 0; i < seq; i++) { x = (x * 1103515245 + 12345) >>> 0; ids[i] = BigInt(x % V); }
      const feeds = {
        input_ids: new ort.Tensor('int64', ids, [1, seq]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: seq }, (_, i) => BigInt(i)), [1, seq]),
        audio_features: new ort.Tensor('float32', randomFloats(8 * H, seed, 0.5), [1, 8, H]),
        audio_offset: new ort.Tensor('int64', BigInt64Array.of(3n), [1]),
      };
      const top1 = (logits: Float32Array) => Array.from({ length: seq }, (_, r) => {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[r * V + v] > logits[r * V + best]) best = v;
        return best;
      });
      const ref = top1((await run(join(floatDir, 'decoder_init.onnx'), feeds)).logits.data as Float32Array);
      for (const [k, dir] of [['whole', wholeDir], ['decoders', decodersDir]] as const) {
        const got = top1((await run(join(dir, 'decoder_init.int4.onnx'), feeds)).logits.data as Float32Array);
        agree[k] += got.filter((t, i) => t === ref[i]).length;
      }
      agree.total += seq;
    }
    // Random weights give nearly flat logits (quantize/model-dir.test.ts: int4 top-1 ~39 %), so
    // the int4 lookup's half-step moves of every prompt row cost visibly here: measured whole
    // 36/128 = 28 %, decoders-only 50/128 = 39 % (the seeds and bytes are fixed). Chance is 1/151936.
    expect(agree.whole / agree.total).toBeGreaterThanOrEqual(0.25);
    expect(agree.whole / agree.total).toBeGreaterThanOrEqual(agree.decoders / agree.total - 0.15);
  });

  it('re-running gives byte-identical files; a decoders recipe afterwards removes the int4 encoder and restates config.json', async () => {
    const again = await workingCopy(floatDir);
    await quantizeWhole(again);
    for (const f of result.files) {
      expect(sha(new Uint8Array(await readFile(join(again, f)))), f).toBe(sha(new Uint8Array(await readFile(join(wholeDir, f)))));
    }
    const r = await quantizeModelDir({ modelDir: again, ...QUANTIZE_DEFAULTS, preset: 'decoders', exclude: [], threads: 2 });
    expect(r.files).not.toContain('encoder.int4.onnx');
    await expect(access(join(again, 'encoder.int4.onnx'))).rejects.toThrow();
    await expect(access(join(again, 'encoder_weights.int4.data'))).rejects.toThrow();
    const cfg = OutputConfigSchema.parse(JSON.parse(await readFile(join(again, 'config.json'), 'utf8')));
    expect(cfg.quantization?.preset).toBe('decoders');
    expect(cfg.quantization?.encoder).toBe('fp32');
    expect(cfg.quantization?.embedding).toBe('fp32');
  });
});
