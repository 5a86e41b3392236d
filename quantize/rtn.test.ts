import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../common/float16.js';
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

/** Squared error of dequantising `q` against `w`, per block (n, kb), in float64. */
function blockErrors(w: Float32Array, K: number, N: number, p: RtnParams, q: ReturnType<typeof rtnQuantize>): number[] {
  const d = rtnDequantize(q, K, N, p);
  const nb = Math.ceil(K / p.blockSize);
  const e = new Array<number>(N * nb).fill(0);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) e[n * nb + Math.floor(k / p.blockSize)] += (d[k * N + n] - w[k * N + n]) ** 2;
  return e;
}

describe('RTN with the clipping search (clip)', () => {
  const clipCases: Array<{ K: number; N: number; p: RtnParams }> = [
    { K: 256, N: 24, p: { bits: 4, blockSize: 64, symmetric: false, clip: true } },
    { K: 200, N: 9, p: { bits: 4, blockSize: 32, symmetric: false, clip: true } },
    { K: 128, N: 10, p: { bits: 4, blockSize: 128, symmetric: true, clip: true } },
    { K: 96, N: 7, p: { bits: 8, blockSize: 32, symmetric: false, clip: true } },
  ];
  for (const { K, N, p } of clipCases) {
    const label = `K=${K} N=${N} bits=${p.bits} block=${p.blockSize} ${p.symmetric ? 'sym' : 'asym'}`;
    it(`no block is worse than MLAS's min/max range, most normal blocks are better, and W / W^T agree (${label})`, () => {
      const w = randomFloats(K * N, K + 3 * N, 0.05);
      const plainP = { ...p, clip: false };
      const clipped = rtnQuantize(w, 'KN', K, N, p);
      const plain = rtnQuantize(w, 'KN', K, N, plainP);
      const ec = blockErrors(w, K, N, p, clipped);
      const ep = blockErrors(w, K, N, plainP, plain);
      // The search starts from the min/max range and only moves to a range with less error.
      ec.forEach((e, i) => expect(e).toBeLessThanOrEqual(ep[i] * (1 + 1e-9) + 1e-30));
      const better = ec.filter((e, i) => e < ep[i] * (1 - 1e-6)).length;
      expect(better).toBeGreaterThan(ec.length / 2);
      const sum = (a: number[]): number => a.reduce((s, x) => s + x, 0);
      expect(sum(ec)).toBeLessThan(sum(ep) * 0.99);
      const t = rtnQuantize(transpose(w, K, N), 'NK', K, N, p);
      expect(Buffer.from(t.B).equals(Buffer.from(clipped.B))).toBe(true);
      expect(Array.from(t.scales)).toEqual(Array.from(clipped.scales));
    });
  }

  it('matches a brute-force search over the same candidate ranges (asymmetric int4)', () => {
    const K = 64;
    const N = 6;
    const p: RtnParams = { bits: 4, blockSize: 64, symmetric: false, clip: true };
    const w = randomFloats(K * N, 11, 1);
    w[5 * N + 2] = 9; // one outlier: its block must clip
    const q = rtnQuantize(w, 'KN', K, N, p);
    const errors = blockErrors(w, K, N, p, q);
    for (let n = 0; n < N; n++) {
      const vals = Array.from({ length: K }, (_, k) => w[k * N + n]);
      const lo0 = Math.min(0, ...vals);
      const hi0 = Math.max(0, ...vals);
      // Every candidate range in float64 (the kernel rounds in float32: compare errors, not bits).
      let best = Infinity;
      for (let i = 0; i <= 10; i++) {
        const f = 1 - 0.03 * i;
        for (const [lo, hi] of [[lo0 * f, hi0 * f], [lo0 * f, hi0], [lo0, hi0 * f]]) {
          const s = (hi - lo) / 15;
          const z = Math.min(15, Math.max(0, Math.round(-lo / s)));
          let e = 0;
          for (const v of vals) { const c = Math.min(15, Math.max(0, Math.round(v / s + z))); e += (v - (c - z) * s) ** 2; }
          best = Math.min(best, e);
        }
      }
      expect(errors[n]).toBeLessThanOrEqual(best * (1 + 1e-4));
      expect(errors[n]).toBeGreaterThanOrEqual(best * (1 - 1e-4));
    }
    // The outlier's column clipped its range: its scale is below the min/max one.
    const plain = rtnQuantize(w, 'KN', K, N, { ...p, clip: false });
    expect(q.scales[2]).toBeLessThan(plain.scales[2]);
  });

  it('worker threads give the same clipped bytes as the in-thread kernel', async () => {
    const K = 256;
    const N = 4096;
    const w = randomFloats(K * N, 9, 0.02);
    const p: RtnParams = { bits: 4, blockSize: 128, symmetric: false, clip: true };
    const pool = new RtnWorkerPool(2);
    try {
      const viaPool = await quantizeWeight(pool, { key: 'c', params: p, source: { kind: 'inline', bytes: new Uint8Array(w.buffer) }, layout: 'KN', K, N, weightName: 'w' }, p);
      const direct = rtnQuantize(w, 'KN', K, N, p);
      expect(Buffer.from(viaPool.B).equals(Buffer.from(direct.B))).toBe(true);
      expect(Buffer.from(viaPool.scales.buffer).equals(Buffer.from(direct.scales.buffer))).toBe(true);
      expect(Buffer.from(viaPool.zeroPoints!).equals(Buffer.from(direct.zeroPoints!))).toBe(true);
    } finally {
      await pool.close();
    }
  });
});

describe('RTN with float16 scales (halfScales)', () => {
  for (const p of [
    { bits: 4, blockSize: 32, symmetric: false, halfScales: true },
    { bits: 8, blockSize: 64, symmetric: true, halfScales: true },
    { bits: 4, blockSize: 64, symmetric: false, clip: true, halfScales: true },
  ] as RtnParams[]) {
    it(`every scale is a float16 value and the codes are made from it (bits ${p.bits}, ${p.symmetric ? 'sym' : 'asym'}${p.clip ? ', clip' : ''})`, () => {
      const K = 128;
      const N = 12;
      const w = awkwardWeight(K, N, 21);
      w[7 * N + 4] = 3e-6; // small values: the scale of a near-zero block
      const q = rtnQuantize(w, 'KN', K, N, p);
      for (const s of q.scales) expect(f16ToF32(f32ToF16(s))).toBe(s);
      if (!p.clip) {
        // Rounding to float16 moves a scale by at most 2^-11 of itself (with clip the search may pick another range).
        const plain = rtnQuantize(w, 'KN', K, N, { ...p, halfScales: false });
        q.scales.forEach((s, i) => expect(Math.abs(s - plain.scales[i])).toBeLessThanOrEqual(Math.abs(plain.scales[i]) * 2 ** -11 + 2 ** -25));
        const d = rtnDequantize(q, K, N, p);
        const nb = Math.ceil(K / p.blockSize);
        for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) {
          const step = Math.abs(q.scales[n * nb + Math.floor(k / p.blockSize)]);
          // The rounded scale can fall a hair short of the range: one step at the far end, as symmetric.
          expect(Math.abs(d[k * N + n] - w[k * N + n])).toBeLessThanOrEqual(step * (p.symmetric ? 1.001 : 0.501) + 1e-12 + Math.abs(w[k * N + n]) * 2 ** -10);
        }
      }
    });
  }

  it('refuses a scale float16 cannot hold, naming the value', () => {
    const w = new Float32Array(32 * 2).fill(1e6);
    expect(() => rtnQuantize(w, 'KN', 32, 2, { bits: 4, blockSize: 32, symmetric: false, halfScales: true })).toThrow(/does not fit float16/);
  });
});
