import { describe, expect, it } from 'vitest';
import { rtnDequantize, rtnQuantize, rtnShape, type RtnParams } from './rtn.js';
import { quantizeWeight } from './quantize-weight.js';
import { RtnWorkerPool } from './worker-pool.js';
import { randomFloats } from './test-graphs.js';

/**
 * Reference written straight from MLAS's formulas (q4_dq.cpp range2scalezp / range2scale /
 * quantizeAndTranspose), one element at a time, with float32 rounding done through a
 * Float32Array cell instead of Math.fround.
 */
function reference(w: Float32Array, K: number, N: number, p: RtnParams) {
  const f = new Float32Array(1);
  const F = (x: number): number => { f[0] = x; return f[0]; };
  const roundf = (x: number): number => Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
  const nb = Math.ceil(K / p.blockSize);
  const qmax = 2 ** p.bits - 1;
  const mid = 2 ** (p.bits - 1);
  const codes: number[][] = [];
  const scales: number[] = [];
  const zps: number[] = [];
  for (let n = 0; n < N; n++) {
    const col: number[] = [];
    for (let b = 0; b < nb; b++) {
      const vals: number[] = [];
      for (let k = b * p.blockSize; k < Math.min(K, (b + 1) * p.blockSize); k++) vals.push(w[k * N + n]);
      let mn = Math.min(...vals);
      let mx = Math.max(...vals);
      let scale: number;
      let zp: number;
      if (p.symmetric) {
        scale = F(-(Math.abs(mx) > Math.abs(mn) ? mx : mn) / mid);
        zp = mid;
      } else {
        mn = Math.min(mn, 0);
        mx = Math.max(mx, 0);
        scale = F(F(mx - mn) / qmax);
        const zf = scale === 0 ? mn : F(0 - F(mn / scale));
        zp = zf < 0 ? 0 : zf > qmax ? qmax : roundf(zf);
      }
      scales.push(scale);
      zps.push(zp);
      const recip = scale === 0 ? 0 : F(1 / scale);
      for (let i = 0; i < p.blockSize; i++) {
        if (i < vals.length) col.push(Math.min(qmax, Math.max(0, roundf(F(F(vals[i] * recip) + zp)))));
        else col.push(zp);
      }
    }
    codes.push(col);
  }
  return { codes, scales, zps, nb };
}

function unpack(B: Uint8Array, bits: number, n: number, count: number): number[] {
  const out: number[] = [];
  if (bits === 8) for (let i = 0; i < count; i++) out.push(B[n * count + i]);
  else for (let i = 0; i < count; i++) out.push((B[n * (count / 2) + (i >> 1)] >> (4 * (i & 1))) & 15);
  return out;
}

/** A weight with the awkward cases: an all-positive block, an all-zero block, a constant block. */
function awkwardWeight(K: number, N: number, seed: number): Float32Array {
  const w = randomFloats(K * N, seed, 0.05);
  for (let k = 0; k < Math.min(K, 32); k++) {
    w[k * N + 0] = Math.abs(w[k * N + 0]) + 0.01; // all positive: range must still include 0
    w[k * N + 1] = 0;
    if (N > 2) w[k * N + 2] = -0.25;
  }
  w[5 * N + 3 % N] = 1.5; // an outlier
  return w;
}

function transpose(w: Float32Array, K: number, N: number): Float32Array {
  const t = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) t[n * K + k] = w[k * N + n];
  return t;
}

const CASES: { K: number; N: number; p: RtnParams }[] = [
  { K: 128, N: 24, p: { bits: 4, blockSize: 32, symmetric: false } },
  { K: 96, N: 10, p: { bits: 4, blockSize: 64, symmetric: false } }, // K % block != 0, odd block count
  { K: 128, N: 12, p: { bits: 4, blockSize: 32, symmetric: true } },
  { K: 80, N: 8, p: { bits: 8, blockSize: 32, symmetric: false } },
  { K: 64, N: 8, p: { bits: 8, blockSize: 16, symmetric: true } },
];

describe('RTN block quantisation (MatMulNBits layout)', () => {
  for (const { K, N, p } of CASES) {
    const label = `K=${K} N=${N} bits=${p.bits} block=${p.blockSize} ${p.symmetric ? 'sym' : 'asym'}`;
    it(`matches the MLAS formulas element by element (${label})`, () => {
      const w = awkwardWeight(K, N, K * 31 + N);
      const q = rtnQuantize(w, 'KN', K, N, p);
      const ref = reference(w, K, N, p);
      const shape = rtnShape(K, N, p);
      expect(q.B.length).toBe(N * shape.nBlocks * (p.blockSize * p.bits) / 8);
      expect(Array.from(q.scales)).toEqual(ref.scales);
      for (let n = 0; n < N; n++) expect(unpack(q.B, p.bits, n, shape.nBlocks * p.blockSize)).toEqual(ref.codes[n]);
      if (p.symmetric) expect(q.zeroPoints).toBeNull();
      else {
        for (let n = 0; n < N; n++) {
          for (let b = 0; b < shape.nBlocks; b++) {
            const byte = q.zeroPoints![n * shape.zpCols + (p.bits === 8 ? b : b >> 1)];
            expect(p.bits === 8 ? byte : (byte >> (4 * (b & 1))) & 15).toBe(ref.zps[n * shape.nBlocks + b]);
          }
          // An odd block count leaves the last high nibble at MLAS's fill value 8.
          if (p.bits === 4 && shape.nBlocks % 2 === 1) expect(q.zeroPoints![n * shape.zpCols + shape.zpCols - 1] >> 4).toBe(8);
        }
      }
    });

    it(`gives the same bytes from W [K,N] and from W^T [N,K] (${label})`, () => {
      const w = awkwardWeight(K, N, 7);
      const a = rtnQuantize(w, 'KN', K, N, p);
      const b = rtnQuantize(transpose(w, K, N), 'NK', K, N, p);
      expect(Buffer.from(b.B).equals(Buffer.from(a.B))).toBe(true);
      expect(Array.from(b.scales)).toEqual(Array.from(a.scales));
      expect(b.zeroPoints && Buffer.from(b.zeroPoints).equals(Buffer.from(a.zeroPoints!))).toBe(p.symmetric ? null : true);
    });

    it(`dequantises every weight to within ${p.symmetric ? 'one step' : 'half a step'} (${label})`, () => {
      const w = awkwardWeight(K, N, 99);
      const q = rtnQuantize(w, 'KN', K, N, p);
      const d = rtnDequantize(q, K, N, p);
      const nb = Math.ceil(K / p.blockSize);
      for (let k = 0; k < K; k++) {
        for (let n = 0; n < N; n++) {
          const step = Math.abs(q.scales[n * nb + Math.floor(k / p.blockSize)]);
          // Symmetric maps [-8, 7] * scale: the far end of the range is one step short.
          const bound = (p.symmetric ? 1 : 0.5) * step * (1 + 1e-6) + 1e-12;
          expect(Math.abs(d[k * N + n] - w[k * N + n])).toBeLessThanOrEqual(bound);
        }
      }
    });
  }

  it('an all-zero block gets scale 0 and dequantises to exact zeros', () => {
    const w = new Float32Array(64 * 4);
    const q = rtnQuantize(w, 'KN', 64, 4, { bits: 4, blockSize: 32, symmetric: false });
    expect(Array.from(q.scales)).toEqual(new Array(8).fill(0));
    expect(Array.from(rtnDequantize(q, 64, 4, { bits: 4, blockSize: 32, symmetric: false }))).toEqual(Array.from(w));
  });

  it('worker threads produce the same bytes as the in-thread kernel, whatever the slab split', async () => {
    const K = 256;
    const N = 8192; // 8 MiB of float32: several slabs per weight
    const w = randomFloats(K * N, 5, 0.02);
    const p: RtnParams = { bits: 4, blockSize: 32, symmetric: false };
    const pool = new RtnWorkerPool(3);
    try {
      const bytes = new Uint8Array(w.buffer);
      const viaPool = await quantizeWeight(pool, { key: 'k', params: p, source: { kind: 'inline', bytes }, layout: 'KN', K, N, weightName: 'w' }, p);
      const direct = rtnQuantize(w, 'KN', K, N, p);
      expect(Buffer.from(viaPool.B).equals(Buffer.from(direct.B))).toBe(true);
      expect(Buffer.from(viaPool.scales.buffer).equals(Buffer.from(direct.scales.buffer))).toBe(true);
      expect(Buffer.from(viaPool.zeroPoints!).equals(Buffer.from(direct.zeroPoints!))).toBe(true);
      const t = transpose(w, K, N);
      const viaPoolT = await quantizeWeight(pool, { key: 't', params: p, source: { kind: 'inline', bytes: new Uint8Array(t.buffer) }, layout: 'NK', K, N, weightName: 't' }, p);
      expect(Buffer.from(viaPoolT.B).equals(Buffer.from(direct.B))).toBe(true);
    } finally {
      await pool.close();
    }
  });
});
