import { describe, it, expect } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from './graph-builder.js';
import { WeightStore, WEIGHT_ALIGNMENT } from './weight-store.js';
import { modelBytes as encodeModel, writeModel } from './model.js';
import { decodeModel } from '../common/onnx/index.js';
import { attentionCore, gelu, layerNorm, linear, mergeHeads, splitHeads } from './layers.js';
import { transpose2d } from './weights.js';

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'gb-core-'));
  try { return await fn(dir); } finally { await rm(dir, { recursive: true, force: true }); }
}

const erf = (x: number): number => {
  // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead (|x| small in this test).
  let sum = 0; let term = x; let n = 0;
  while (Math.abs(term) > 1e-17 && n < 200) { sum += term / (2 * n + 1); n += 1; term *= -x * x / n; }
  return (2 / Math.sqrt(Math.PI)) * sum;
};

describe('GraphBuilder core', () => {
  it('names nodes by scope, dedups constants, rejects unknown inputs and float-valued int attrs', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', 'float32', ['batch', 4]);
    const s = b.scope('/model/layers.0/attn').scope('q_proj');
    const y = s.op('Mul', [x, s.constFloat(2)]);
    const y2 = s.op('Mul', [y, b.constFloat(2)]);
    expect(y).toBe('/model/layers.0/attn/q_proj/Mul/output_0');
    expect(y2).toBe('/model/layers.0/attn/q_proj/Mul_1/output_0');
    expect(b.constInt64([1, -1])).toBe(b.constInt64([1, -1]));
    expect(b.constInt64([1, -1])).not.toBe(b.constInt64([1, -1], [2, 1]));
    expect(b.stats().initializers).toBe(3);
    expect(() => b.op('Relu', ['nope'])).toThrow(/unknown input "nope"/);
    expect(() => b.op('Softmax', [x], { attrs: { axis: 1.5 } })).toThrow(/floatAttrValue/);
    b.output('y', 'float32', ['batch', 4], y2);
    const g = b.toGraphProto();
    expect(g.node?.[1].output).toEqual(['y']);
  });

  it('writes external weights once, aligned, and runs in onnxruntime', async () => {
    await withTempDir(async (dir) => {
      const store = await WeightStore.create(join(dir, 'w.data'));
      const wOut = 6, wIn = 8, heads = 2, hd = 3;
      const wTorch = Float32Array.from({ length: wOut * wIn }, (_, i) => Math.sin(i) * 0.3);
      const bias = Float32Array.from({ length: wOut }, (_, i) => 0.1 * i - 0.2);
      let reads = 0;
      const build = async (name: string): Promise<GraphBuilder> => {
        const b = new GraphBuilder(name, { weights: store });
        const x = b.input('x', 'float32', ['batch', 'seq', wIn]);
        const w = await b.weight('lin.weight', 'float32', [wIn, wOut], () => { reads += 1; return transpose2d(wTorch, wOut, wIn); });
        const bb = await b.weight('lin.bias', 'float32', [wOut], () => { reads += 1; return bias; });
        const h = linear(b.scope('/model/lin'), x, w, bb);
        const g = gelu(b.scope('/model/act'), h);
        const scale = b.initializer('ln.weight', 'float32', [wOut], new Float32Array(wOut).fill(1.5));
        const shift = b.initializer('ln.bias', 'float32', [wOut], new Float32Array(wOut).fill(0.25));
        const n = layerNorm(b.scope('/model/ln'), g, scale, shift, 1e-5);
        const a = b.scope('/model/attn');
        const qh = splitHeads(a, n, heads, hd);
        const o = mergeHeads(a, attentionCore(a, qh, qh, qh, { scale: 1 / Math.sqrt(hd) }), heads * hd);
        b.output('y', 'float32', ['batch', 'seq', wOut], o);
        return b;
      };
      const b1 = await build('one');
      const b2 = await build('two');
      expect(reads).toBe(2);
      expect(store.list().map((t) => t.offset % WEIGHT_ALIGNMENT)).toEqual([0, 0]);
      await store.commit();
      await writeModel(join(dir, 'one.onnx'), b1);
      await writeModel(join(dir, 'two.onnx'), b2);
      expect(Buffer.compare(Buffer.from(encodeModel(b1)), await readFile(join(dir, 'one.onnx')))).toBe(0);
      const m = decodeModel(await readFile(join(dir, 'two.onnx')));
      expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
      const w = m.graph?.initializer?.find((t) => t.name === 'lin.weight');
      expect(w?.dataLocation).toBe(1);
      expect(w?.externalData?.map((e) => [e.key, e.value])).toEqual([['location', 'w.data'], ['offset', '0'], ['length', String(wIn * wOut * 4)]]);

      const S = 3;
      const xs = Float32Array.from({ length: S * wIn }, (_, i) => Math.cos(i * 0.7));
      const sess = await ort.InferenceSession.create(join(dir, 'two.onnx'));
      const out = (await sess.run({ x: new ort.Tensor('float32', xs, [1, S, wIn]) })).y;
      expect(out.dims).toEqual([1, S, wOut]);

      // Plain float64 recomputation of the same arithmetic.
      const want: number[] = [];
      const rows: number[][] = [];
      for (let s = 0; s < S; s++) {
        const g: number[] = [];
        for (let o = 0; o < wOut; o++) {
          let acc = bias[o];
          for (let i = 0; i < wIn; i++) acc += xs[s * wIn + i] * wTorch[o * wIn + i];
          g.push(0.5 * acc * (1 + erf(acc / Math.SQRT2)));
        }
        const mean = g.reduce((p, v) => p + v, 0) / wOut;
        const vr = g.reduce((p, v) => p + (v - mean) ** 2, 0) / wOut;
        rows.push(g.map((v) => ((v - mean) / Math.sqrt(vr + 1e-5)) * 1.5 + 0.25));
      }
      for (let s = 0; s < S; s++) {
        for (let h = 0; h < heads; h++) {
          const q = (t: number): number[] => rows[t].slice(h * hd, (h + 1) * hd);
          const sc = [0, 1, 2].map((t) => q(s).reduce((p, v, d) => p + v * q(t)[d], 0) / Math.sqrt(hd));
          const mx = Math.max(...sc);
          const e = sc.map((v) => Math.exp(v - mx));
          const z = e.reduce((p, v) => p + v, 0);
          for (let d = 0; d < hd; d++) want[s * wOut + h * hd + d] = e.reduce((p, v, t) => p + (v / z) * q(t)[d], 0);
        }
      }
      const got = Array.from(out.data as Float32Array);
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-5);
    });
  });

  it('transpose2d transposes any shape, including ragged strips', () => {
    for (const [rows, cols] of [[1, 1], [3, 5], [17, 2], [33, 40]]) {
      const src = Float32Array.from({ length: rows * cols }, (_, i) => i);
      const out = transpose2d(src, rows, cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) expect(out[c * rows + r]).toBe(src[r * cols + c]);
    }
  });

  it('abort leaves no data file behind', async () => {
    await withTempDir(async (dir) => {
      const store = await WeightStore.create(join(dir, 'w.data'));
      await expect(store.add('bad', 'float32', [4], () => new Float32Array(3))).rejects.toThrow(/expected 16 bytes/);
      await store.abort();
      const { readdir } = await import('node:fs/promises');
      expect(await readdir(dir)).toEqual([]);
    });
  });
});
