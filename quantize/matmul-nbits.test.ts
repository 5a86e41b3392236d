import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType, readIntAttribute, dimsOf, loadModel, readTensorBytesSync, type LoadedModel, type NodeProto } from '../common/onnx/index.js';
import { rtnDequantize, type RtnOutput, type RtnParams } from './rtn.js';
import { transformGraphs } from './transform.js';
import type { NBitsOptions } from './matmul-nbits.js';
import {
  buildModel, f32, maxAbsDiff, node, randomFloats, runOrt, saveWithExternalData, removeTempDirs, tempDir, type GraphSpec,
} from './test-graphs.js';

afterAll(removeTempDirs);

const S = 3;

/** x[1,S,K] -> MatMul(W[K,N]) -> y ; x2[S,K] -> Gemm(E[N,K], bias, transB=1) -> z */
function linearGraph(K: number, N: number): GraphSpec {
  return {
    inputs: [{ name: 'x', dims: [1, S, K] }, { name: 'x2', dims: [S, K] }],
    outputs: [{ name: 'y', dims: [1, S, N] }, { name: 'z', dims: [S, N] }],
    initializers: [
      { name: 'W', dims: [K, N], data: randomFloats(K * N, 1, 0.05) },
      { name: 'E', dims: [N, K], data: randomFloats(K * N, 2, 0.05) },
      { name: 'bias', dims: [N], data: randomFloats(N, 3, 0.1) },
    ],
    nodes: [
      node('MatMul', ['x', 'W'], ['y'], {}, '', 'proj/MatMul'),
      node('Gemm', ['x2', 'E', 'bias'], ['z'], { transB: 1, alpha: 1.0, beta: 1.0 }, '', 'head/Gemm'),
    ],
  };
}

/** Tied embedding: ids -> Gather(E) -> h -> MatMul(h, Transpose(E)) -> logits. */
function tiedGraph(V: number, H: number): GraphSpec {
  return {
    inputs: [{ name: 'ids', elemType: DataType.INT64, dims: [1, S] }],
    outputs: [{ name: 'logits', dims: [1, S, V] }, { name: 'h', dims: [1, S, H] }],
    initializers: [{ name: 'E', dims: [V, H], data: randomFloats(V * H, 4, 0.5) }],
    nodes: [
      node('Gather', ['E', 'ids'], ['h'], { axis: 0 }),
      node('Transpose', ['E'], ['Et'], { perm: [1, 0] }),
      node('MatMul', ['h', 'Et'], ['logits']),
    ],
  };
}

const OPTS: NBitsOptions = { bits: 4, blockSize: 32, symmetric: false, accuracyLevel: 0, exclude: [] };

async function quantized(spec: GraphSpec, opts: NBitsOptions, fuse = true) {
  const dir = await tempDir('nbits');
  const src = await saveWithExternalData(buildModel(spec), dir, 'm.onnx', 'm.data');
  const dst = join(dir, 'm.q.onnx');
  const report = await transformGraphs({ graphs: [{ src, dst }], dataFile: join(dir, 'm.q.data'), fuse, skipFusion: false, quantize: opts });
  return { dir, src, dst, report, model: await loadModel(dst) };
}

/** The MatMulNBits tensors of a node, read back from the written files. */
function nbitsTensors(m: LoadedModel, n: NodeProto): { q: RtnOutput; K: number; N: number; p: RtnParams } {
  const init = (name: string) => m.model.graph!.initializer!.find((t) => t.name === name)!;
  const bytes = (name: string) => readTensorBytesSync(init(name), m.path);
  const K = readIntAttribute(n, 'K', 0);
  const N = readIntAttribute(n, 'N', 0);
  const bits = readIntAttribute(n, 'bits', 4) as 4 | 8;
  const blockSize = readIntAttribute(n, 'block_size', 0);
  const sc = bytes(n.input![2]);
  const zpName = n.input![3];
  return {
    q: { B: bytes(n.input![1]), scales: new Float32Array(sc.buffer.slice(sc.byteOffset, sc.byteOffset + sc.byteLength)), zeroPoints: zpName ? bytes(zpName) : null },
    K, N, p: { bits, blockSize, symmetric: !zpName },
  };
}

/** y = x @ W in float64, and the scale sum|x||W| the float32 rounding error is relative to. */
function matmulRef(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array) {
  const y = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      let a = 0;
      for (let k = 0; k < K; k++) { s += x[m * K + k] * w[k * N + n]; a += Math.abs(x[m * K + k] * w[k * N + n]); }
      y[m * N + n] = s;
      mag[m * N + n] = a;
    }
  }
  return { y, mag };
}

function expectCloseTo(got: ArrayLike<number>, ref: { y: Float64Array; mag: Float64Array }, rel: number): void {
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref.y[i]) / (ref.mag[i] + 1e-12));
  expect(worst).toBeLessThan(rel);
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

const variants: [string, number, Partial<NBitsOptions>][] = [
  ['int4 asymmetric', 128, {}],
  ['int4, K not a multiple of the block size', 80, {}],
  ['int4 symmetric', 96, { symmetric: true }],
  ['int8 asymmetric', 96, { bits: 8 }],
  ['int8 symmetric', 64, { bits: 8, symmetric: true, blockSize: 16 }],
];

describe('MatMul/Gemm -> MatMulNBits', () => {
  for (const [label, K, over] of variants) {
    it(`ORT's MatMulNBits equals a float64 matmul with the dequantised weights (${label})`, async () => {
      const N = 40;
      const spec = linearGraph(K, N);
      const opts = { ...OPTS, ...over };
      const { dst, model, report } = await quantized(spec, opts);
      expect(report.graphs[0].quantization!.quantized.map((q) => q.weight)).toEqual(['W', 'E']);
      const nodes = model.model.graph!.node!;
      expect(nodes.map((n) => n.opType)).toEqual(['MatMulNBits', 'MatMulNBits']);
      expect(model.model.graph!.initializer!.some((t) => t.name === 'W' || t.name === 'E')).toBe(false);

      const x = randomFloats(S * K, 20);
      const x2 = randomFloats(S * K, 21);
      const out = await runOrt(dst, { x: f32(x, [1, S, K]), x2: f32(x2, [S, K]) });
      expect(out.y.dims).toEqual([1, S, N]);
      const w = nbitsTensors(model, nodes[0]);
      const e = nbitsTensors(model, nodes[1]);
      expect(w.p).toEqual({ bits: opts.bits, blockSize: opts.blockSize, symmetric: opts.symmetric });
      const bias = spec.initializers[2].data as Float32Array;
      expectCloseTo(out.y.data, matmulRef(x, rtnDequantize(w.q, K, N, w.p), S, K, N), 1e-6);
      expectCloseTo(out.z.data, matmulRef(x2, rtnDequantize(e.q, K, N, e.p), S, K, N, bias), 1e-6);

      // Quantisation error stays within the block's step (half a step asymmetric, one symmetric).
      const W = spec.initializers[0].data as Float32Array;
      const dq = rtnDequantize(w.q, K, N, w.p);
      const nb = Math.ceil(K / opts.blockSize);
      for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) {
        const step = Math.abs(w.q.scales[n * nb + Math.floor(k / opts.blockSize)]);
        expect(Math.abs(dq[k * N + n] - W[k * N + n])).toBeLessThanOrEqual((opts.symmetric ? 1 : 0.5) * step * (1 + 1e-6));
      }
    });
  }

  it('accuracy_level 4 (int8 activations inside ORT) stays within the activation rounding bound', async () => {
    const K = 128;
    const N = 48;
    const { dst, model } = await quantized(linearGraph(K, N), { ...OPTS, accuracyLevel: 4 });
    const nodes = model.model.graph!.node!;
    expect(nodes.every((n) => readIntAttribute(n, 'accuracy_level', 0) === 4)).toBe(true);
    const x = randomFloats(S * K, 30);
    const out = await runOrt(dst, { x: f32(x, [1, S, K]), x2: f32(randomFloats(S * K, 31), [S, K]) });
    const w = nbitsTensors(model, nodes[0]);
    const dq = rtnDequantize(w.q, K, N, w.p);
    const ref = matmulRef(x, dq, S, K, N);
    // A is quantised to int8 per block of block_size: each element moves by at most
    // max|A_block| / 127 / 2, so |dy| <= sum_k |w_k| * that.
    for (let m = 0; m < S; m++) for (let n = 0; n < N; n++) {
      let bound = 0;
      for (let b = 0; b < K; b += OPTS.blockSize) {
        let amax = 0;
        for (let k = b; k < b + OPTS.blockSize; k++) amax = Math.max(amax, Math.abs(x[m * K + k]));
        for (let k = b; k < b + OPTS.blockSize; k++) bound += Math.abs(dq[k * N + n]) * (amax / 127 / 2);
      }
      expect(Math.abs(out.y.data[m * N + n] - ref.y[m * N + n])).toBeLessThanOrEqual(bound * 1.01 + 1e-5);
    }
  });

  it('a tied lm_head (MatMul of Transpose(E)) is quantised while the Gather keeps the float table, stored once', async () => {
    const V = 300;
    const H = 64;
    const spec = tiedGraph(V, H);
    const { dst, model, report } = await quantized(spec, OPTS);
    const g = model.model.graph!;
    expect(g.node!.map((n) => n.opType)).toEqual(['Gather', 'MatMulNBits']);
    expect(g.initializer!.map((t) => t.name)).toEqual(['E', 'E_Q4', 'E_scales', 'E_zero_points']);
    expect(report.data.uniqueTensors).toBe(4);
    const ids = BigInt64Array.from([5n, 299n, 0n]);
    const out = await runOrt(dst, { ids: new ort.Tensor('int64', ids, [1, S]) });
    const E = spec.initializers[0].data as Float32Array;
    // Gather rows are the exact float rows.
    expect(Array.from(out.h.data)).toEqual([...ids].flatMap((i) => Array.from(E.subarray(Number(i) * H, Number(i) * H + H))));
    const q = nbitsTensors(model, g.node![1]);
    expectCloseTo(out.logits.data, matmulRef(out.h.data, rtnDequantize(q.q, H, V, q.p), S, H, V), 1e-6);
    // The dequantised head is E^T within half a step.
    const Et = transpose(E, V, H);
    const dq = rtnDequantize(q.q, H, V, q.p);
    expect(maxAbsDiff(dq, Et)).toBeLessThanOrEqual(0.5 * Math.max(...q.q.scales) * (1 + 1e-6));
  });

  it('--exclude keeps matching nodes in float and an unmatched pattern is an error', async () => {
    const { model, report } = await quantized(linearGraph(64, 16), { ...OPTS, exclude: ['head/*'] });
    expect(model.model.graph!.node!.map((n) => n.opType)).toEqual(['MatMulNBits', 'Gemm']);
    expect(report.graphs[0].quantization!.skipped).toEqual([{ node: 'head/Gemm', weight: 'E', reason: 'excluded' }]);
    await expect(quantized(linearGraph(64, 16), { ...OPTS, exclude: ['nothing*'] })).rejects.toThrow(/--exclude nothing\* matches no/);
  });

  it('MatMuls without a constant 2-D float32 weight are left alone', async () => {
    const spec: GraphSpec = {
      inputs: [{ name: 'a', dims: [2, 8] }, { name: 'b', dims: [8, 4] }],
      outputs: [{ name: 'c', dims: [2, 4] }, { name: 'd', dims: [2, 4] }],
      initializers: [{ name: 'W3', dims: [1, 8, 4], data: randomFloats(32, 9) }],
      nodes: [node('MatMul', ['a', 'b'], ['c']), node('MatMul', ['a', 'W3'], ['d3']), node('Reshape', ['d3', 'shape'], ['d'])],
    };
    spec.initializers.push({ name: 'shape', dims: [2], data: BigInt64Array.of(2n, 4n) });
    const { model, report } = await quantized(spec, OPTS);
    expect(report.graphs[0].quantization!.quantized).toEqual([]);
    expect(model.model.graph!.node!.map((n) => n.opType)).toEqual(['MatMul', 'MatMul', 'Reshape']);
  });

  it('two graphs sharing weights get one data file with every tensor once, and reruns are byte-identical', async () => {
    const dir = await tempDir('nbits-pair');
    const spec = linearGraph(128, 64);
    // Both graphs point into one data file, like decoder_init / decoder_step.
    const a = await saveWithExternalData(buildModel(spec), dir, 'a.onnx', 'w.data');
    const b = join(dir, 'b.onnx');
    await (await import('node:fs/promises')).copyFile(a, b);
    const run = () => transformGraphs({
      graphs: [{ src: a, dst: join(dir, 'a.q.onnx') }, { src: b, dst: join(dir, 'b.q.onnx') }],
      dataFile: join(dir, 'w.q.data'), fuse: true, skipFusion: false, quantize: OPTS, threads: 2,
    });
    const first = await run();
    const files = ['a.q.onnx', 'b.q.onnx', 'w.q.data'];
    const bytes1 = await Promise.all(files.map((f) => readFile(join(dir, f))));
    expect(first.weightsQuantized).toBe(2);
    expect(first.data.uniqueTensors).toBe(7); // W and E: B, scales, zero points each; bias
    expect(first.data.references).toBe(14);
    expect(first.data.bytesSaved).toBe(first.data.bytesWritten);
    const second = await run();
    expect(second.data).toEqual(first.data);
    const bytes2 = await Promise.all(files.map((f) => readFile(join(dir, f))));
    files.forEach((f, i) => expect(bytes2[i].equals(bytes1[i]), f).toBe(true));
    const ga = await loadModel(join(dir, 'a.q.onnx'));
    const gb = await loadModel(join(dir, 'b.q.onnx'));
    const offsets = (m: LoadedModel) => m.model.graph!.initializer!.map((t) => [t.name, dimsOf(t).join('x'), t.externalData!.map((e) => e.value).join(':')]);
    expect(offsets(gb)).toEqual(offsets(ga));
  });
});
