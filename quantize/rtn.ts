/**
 * Round-to-nearest block quantisation in ONNX Runtime's MatMulNBits layout, bit for bit as
 * MLAS `BlockwiseQuantizer<float, block, bits, columnwise>::quantizeAndTranspose` computes it
 * (the quantizer behind onnxruntime's `quantize_matmul_4bits` / `quantize_matmul_8bits` and
 * `MatMulNBitsQuantizer`'s default algorithm), in float32 arithmetic:
 *
 *   asymmetric: lo = min(min(block), 0), hi = max(max(block), 0)
 *               scale = (hi - lo) / (2^bits - 1)
 *               zp = clamp(roundf(0 - lo / scale), 0, 2^bits - 1)        (0 when scale is 0)
 *   symmetric:  m = |max| > |min| ? max : min;  scale = -m / 2^(bits-1);  zp = 2^(bits-1) (implicit)
 *   q = clamp(roundf(v * (1/scale) + zp), 0, 2^bits - 1)                  (roundf: half away from 0)
 *   dequantised w = (q - zp) * scale
 *
 * Layout for a weight W used as y = x @ W with W of shape [K, N]:
 *   B            uint8 [N, nBlocks, blobSize], blobSize = blockSize * bits / 8, nBlocks = ceil(K / blockSize);
 *                4-bit codes packed low nibble first along K.
 *   scales       float32 [N, nBlocks]
 *   zero_points  uint8 [N, ceil(nBlocks * bits / 8)], 4-bit zero points packed low nibble first along
 *                the blocks; an unused high nibble holds 8 (MLAS's fill value). Absent when symmetric.
 * When K is not a multiple of the block size, the last block's statistics cover only the real
 * rows; its padding codes are set to the zero point so they dequantise to exactly 0 (MLAS leaves
 * them unspecified; MatMulNBits never reads them).
 *
 * With `clip` (not MLAS: our own option) each block's range is searched instead of taken whole:
 * the min/max range above, then CLIP_STEPS ranges shrunk by 3 % steps down to 70 % (8-bit: 0.3 % steps), at both ends,
 * the low end only and the high end only (symmetric: the scale shrunk alike); the range with the
 * least squared error of the block's dequantised values wins (first found on ties). Clipping a rare
 * extreme value costs it some error but gives every other value of the block a finer step: on
 * normal weights the weight error drops ~4.5 % at block 64 and ~6 % at block 128
 * (investigation entry 35). Same format, same size, same kernels: only the chosen scales differ.
 *
 * The kernel below must stay self-contained (no imports, no outer variables): worker threads run
 * it from its source text (see worker-pool.ts), so the same code runs in tests and in workers.
 */

/** Source weight orientation: `KN` is a MatMul B [K, N]; `NK` is W^T as Gemm(transB=1) or Transpose feeds it. */
export type WeightLayout = 'KN' | 'NK';

export interface RtnParams {
  bits: 4 | 8;
  blockSize: number;
  symmetric: boolean;
  /** Search each block's clipping range for the least squared error (see above); default false: MLAS's min/max. */
  clip?: boolean;
  /**
   * Round every scale to the nearest float16 before the zero point and codes are computed from it,
   * so a float16 copy of the scales is exact (for an op that reads float16 scales: an unshared
   * GatherBlockQuantized, gather-block-quantized.ts). The output array stays float32.
   */
  halfScales?: boolean;
}

export interface RtnShape {
  K: number;
  N: number;
  nBlocks: number;
  blobSize: number;
  /** Bytes of zero points per output column (row of the zero_points tensor). */
  zpCols: number;
}

export function rtnShape(K: number, N: number, p: RtnParams): RtnShape {
  const nBlocks = Math.ceil(K / p.blockSize);
  return { K, N, nBlocks, blobSize: (p.blockSize * p.bits) / 8, zpCols: Math.ceil((nBlocks * p.bits) / 8) };
}

/** The three tensors MatMulNBits reads. */
export interface RtnOutput {
  B: Uint8Array;
  scales: Float32Array;
  /** null when symmetric. */
  zeroPoints: Uint8Array | null;
}

export function allocateRtnOutput(shape: RtnShape, p: RtnParams, shared: boolean): RtnOutput {
  const mk = (bytes: number): ArrayBuffer | SharedArrayBuffer => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  const B = new Uint8Array(mk(shape.N * shape.nBlocks * shape.blobSize));
  const scales = new Float32Array(mk(4 * shape.N * shape.nBlocks));
  let zeroPoints: Uint8Array | null = null;
  if (!p.symmetric) {
    zeroPoints = new Uint8Array(mk(shape.N * shape.zpCols));
    // MLAS pre-fills zero-point bytes with the mid value, so an unused nibble reads 8.
    zeroPoints.fill(p.bits === 4 ? 0x88 : 0x80);
  }
  return { B, scales, zeroPoints };
}

/**
 * Quantises a slab of a float32 weight into the (shared) output arrays.
 * layout 'KN': `src` holds rows [kb0*blockSize, min(kb1*blockSize, K)) of W [K, N]; blocks kb0..kb1-1.
 * layout 'NK': `src` holds rows [n0, n1) of W^T [N, K] (here kb0/kb1 are n0/n1).
 * For 4-bit KN slabs kb0 must be even (two blocks share a zero-point byte).
 */
export function rtnQuantizeSlab(
  src: Float32Array, layout: number, K: number, N: number, start: number, end: number,
  bits: number, blockSize: number, symmetric: boolean, clip: boolean, halfScales: boolean,
  outB: Uint8Array, outScales: Float32Array, outZp: Uint8Array | null,
): void {
  const fround = Math.fround;
  const qmax = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const nBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) >> 3;
  const zpCols = Math.ceil((nBlocks * bits) / 8);
  const FLT_MAX = 3.4028234663852886e38;

  const CLIP_STEPS = 10;
  // 8-bit steps are 17x finer: its best clip is a fraction of a percent.
  const clipStep = bits === 4 ? 0.03 : 0.003;

  // Squared error of the block's `rows` values a[off + r * stride] rounded with (scale, zp), the
  // way the code below rounds them and MatMulNBits dequantises them.
  const blockError = (a: Float32Array, off: number, stride: number, rows: number, scale: number, zp: number): number => {
    const recip = scale !== 0 ? fround(1 / scale) : 0;
    let e = 0;
    for (let r = 0; r < rows; r++) {
      const v = a[off + r * stride];
      const x = fround(fround(v * recip) + zp);
      let q = x < 0 ? 0 : (x + 0.5) | 0;
      if (q > qmax) q = qmax;
      const d = v - fround((q - zp) * scale);
      e += d * d;
    }
    return e;
  };
  // The float16 value nearest a float32 (ties to even), as a number; refuses what float16 cannot hold.
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const half = (x: number): number => {
    if (!halfScales || x === 0) return x;
    f32[0] = x;
    const u = u32[0];
    const sign = u >>> 31 ? -1 : 1;
    const exp = ((u >>> 23) & 0xff) - 127;
    // float16 keeps 10 mantissa bits for exponents -14..15 and fewer below (subnormals, step 2^-24).
    const ulp = 2 ** (Math.max(exp, -14) - 10);
    const a = Math.abs(x) / ulp;
    let r = Math.floor(a);
    const rest = a - r;
    if (rest > 0.5 || (rest === 0.5 && r % 2 === 1)) r += 1;
    const h = r * ulp;
    if (h > 65504) throw new Error(`a scale of ${x} does not fit float16`);
    return sign * h;
  };
  // MLAS's asymmetric scale and zero point for the range [lo, hi] (lo <= 0 <= hi).
  let rangeScale = 0;
  let rangeZp = 0;
  const fromRange = (lo: number, hi: number): void => {
    rangeScale = half(fround(fround(hi - lo) / qmax));
    const zf = rangeScale !== 0 ? fround(0 - fround(lo / rangeScale)) : lo;
    rangeZp = zf < 0 ? 0 : zf > qmax ? qmax : Math.floor(zf + 0.5);
  };

  // Sets scale (and zero point) of block (n, kb) from its value range (searched with `clip`
  // over the block's values a[off + r * stride]); returns the zero point.
  const params = (mn: number, mx: number, n: number, kb: number, a: Float32Array, off: number, stride: number, rows: number): number => {
    // Comparisons with NaN are false: this also catches NaN, and infinities would give garbage scales.
    if (!(mn > -Infinity && mx < Infinity)) throw new Error(`weight column ${n}, block ${kb} is not finite (NaN or infinity)`);
    let scale: number;
    let zp: number;
    if (symmetric) {
      scale = half(fround(-(Math.abs(mx) > Math.abs(mn) ? mx : mn) / mid));
      zp = mid;
      if (clip && scale !== 0) {
        let best = blockError(a, off, stride, rows, scale, zp);
        const whole = scale;
        for (let i = 1; i <= CLIP_STEPS; i++) {
          const s = half(fround(whole * (1 - clipStep * i)));
          const e = blockError(a, off, stride, rows, s, zp);
          if (e < best) { best = e; scale = s; }
        }
      }
    } else {
      const lo = mn < 0 ? mn : 0;
      const hi = mx > 0 ? mx : 0;
      fromRange(lo, hi);
      scale = rangeScale;
      zp = rangeZp;
      if (clip && scale !== 0) {
        let best = blockError(a, off, stride, rows, scale, zp);
        for (let i = 1; i <= CLIP_STEPS; i++) {
          const f = 1 - clipStep * i;
          for (let side = 0; side < 3; side++) {
            fromRange(side === 2 ? lo : fround(lo * f), side === 1 ? hi : fround(hi * f));
            if (rangeScale === 0) continue;
            const e = blockError(a, off, stride, rows, rangeScale, rangeZp);
            if (e < best) { best = e; scale = rangeScale; zp = rangeZp; }
          }
        }
      }
      if (outZp !== null) {
        if (bits === 8) outZp[n * zpCols + kb] = zp;
        else {
          const i = n * zpCols + (kb >> 1);
          outZp[i] = kb & 1 ? (outZp[i] & 0x0f) | (zp << 4) : (outZp[i] & 0xf0) | zp;
        }
      }
    }
    outScales[n * nBlocks + kb] = scale;
    return zp;
  };

  // Quantises block (n, kb) whose `rows` values are a[off .. off+rows-1] (W^T layout).
  // roundf(x) for x >= 0 is trunc(x + 0.5) (x + 0.5 is exact in double for a float x);
  // a negative x clamps to 0 either way. Math.min/max keep the range scan branch-free.
  const block = (a: Float32Array, off: number, rows: number, n: number, kb: number): void => {
    let mn = FLT_MAX;
    let mx = -FLT_MAX;
    for (let r = 0; r < rows; r++) {
      const v = a[off + r];
      mn = Math.min(mn, v);
      mx = Math.max(mx, v);
    }
    const zp = params(mn, mx, n, kb, a, off, 1, rows);
    const scale = outScales[n * nBlocks + kb];
    const recip = scale !== 0 ? fround(1 / scale) : 0;
    const o = (n * nBlocks + kb) * blob;
    if (bits === 8) {
      for (let r = 0; r < blockSize; r++) {
        let q = zp;
        if (r < rows) {
          const x = fround(fround(a[off + r] * recip) + zp);
          q = x < 0 ? 0 : (x + 0.5) | 0;
          if (q > qmax) q = qmax;
        }
        outB[o + r] = q;
      }
    } else if (rows === blockSize) {
      for (let r = 0; r < blockSize; r += 2) {
        const x0 = fround(fround(a[off + r] * recip) + zp);
        let q0 = x0 < 0 ? 0 : (x0 + 0.5) | 0;
        if (q0 > 15) q0 = 15;
        const x1 = fround(fround(a[off + r + 1] * recip) + zp);
        let q1 = x1 < 0 ? 0 : (x1 + 0.5) | 0;
        if (q1 > 15) q1 = 15;
        outB[o + (r >> 1)] = q0 | (q1 << 4);
      }
    } else {
      // Last block of a K that is not a multiple of the block size: pad with the zero point.
      for (let r = 0; r < blockSize; r += 2) {
        let q0 = zp;
        let q1 = zp;
        if (r < rows) {
          const x0 = fround(fround(a[off + r] * recip) + zp);
          q0 = x0 < 0 ? 0 : (x0 + 0.5) | 0;
          if (q0 > 15) q0 = 15;
        }
        if (r + 1 < rows) {
          const x1 = fround(fround(a[off + r + 1] * recip) + zp);
          q1 = x1 < 0 ? 0 : (x1 + 0.5) | 0;
          if (q1 > 15) q1 = 15;
        }
        outB[o + (r >> 1)] = q0 | (q1 << 4);
      }
    }
  };

  if (layout === 1) {
    // W^T rows: each output column n is contiguous along K.
    for (let n = start; n < end; n++) {
      const row = (n - start) * K;
      for (let kb = 0; kb < nBlocks; kb++) block(src, row + kb * blockSize, Math.min(blockSize, K - kb * blockSize), n, kb);
    }
    return;
  }

  // W rows [K, N]: walk each block's rows in memory order with per-column state (range, then
  // reciprocal scale and zero point), so the source is read sequentially and never transposed.
  const mnA = new Float64Array(N);
  const mxA = new Float64Array(N);
  const recipA = new Float64Array(N);
  const zpA = new Float64Array(N);
  const rowStride = nBlocks * blob;
  for (let kb = start; kb < end; kb++) {
    const k0 = kb * blockSize;
    const rows = Math.min(blockSize, K - k0);
    const base = (k0 - start * blockSize) * N;
    mnA.fill(FLT_MAX);
    mxA.fill(-FLT_MAX);
    for (let r = 0; r < rows; r++) {
      const o = base + r * N;
      for (let n = 0; n < N; n++) {
        const v = src[o + n];
        mnA[n] = Math.min(mnA[n], v);
        mxA[n] = Math.max(mxA[n], v);
      }
    }
    for (let n = 0; n < N; n++) {
      const zp = params(mnA[n], mxA[n], n, kb, src, base + n, N, rows);
      const scale = outScales[n * nBlocks + kb];
      zpA[n] = zp;
      recipA[n] = scale !== 0 ? fround(1 / scale) : 0;
    }
    const blockOut = kb * blob;
    if (bits === 8) {
      for (let r = 0; r < blockSize; r++) {
        const o = base + r * N;
        for (let n = 0; n < N; n++) {
          let q = zpA[n];
          if (r < rows) {
            const x = fround(fround(src[o + n] * recipA[n]) + zpA[n]);
            q = x < 0 ? 0 : (x + 0.5) | 0;
            if (q > qmax) q = qmax;
          }
          outB[n * rowStride + blockOut + r] = q;
        }
      }
    } else {
      for (let r = 0; r < blockSize; r += 2) {
        const o0 = base + r * N;
        const o1 = o0 + N;
        const byte = blockOut + (r >> 1);
        const has0 = r < rows;
        const has1 = r + 1 < rows;
        for (let n = 0; n < N; n++) {
          const zp = zpA[n];
          const recip = recipA[n];
          let q0 = zp;
          let q1 = zp;
          if (has0) {
            const x0 = fround(fround(src[o0 + n] * recip) + zp);
            q0 = x0 < 0 ? 0 : (x0 + 0.5) | 0;
            if (q0 > 15) q0 = 15;
          }
          if (has1) {
            const x1 = fround(fround(src[o1 + n] * recip) + zp);
            q1 = x1 < 0 ? 0 : (x1 + 0.5) | 0;
            if (q1 > 15) q1 = 15;
          }
          outB[n * rowStride + byte] = q0 | (q1 << 4);
        }
      }
    }
  }
}

/** Quantises a whole in-memory weight on the calling thread (tests, small tensors). */
export function rtnQuantize(weight: Float32Array, layout: WeightLayout, K: number, N: number, p: RtnParams): RtnOutput {
  const shape = rtnShape(K, N, p);
  const out = allocateRtnOutput(shape, p, false);
  if (layout === 'KN') rtnQuantizeSlab(weight, 0, K, N, 0, shape.nBlocks, p.bits, p.blockSize, p.symmetric, p.clip ?? false, p.halfScales ?? false, out.B, out.scales, out.zeroPoints);
  else rtnQuantizeSlab(weight, 1, K, N, 0, N, p.bits, p.blockSize, p.symmetric, p.clip ?? false, p.halfScales ?? false, out.B, out.scales, out.zeroPoints);
  return out;
}

/** Dequantises MatMulNBits tensors back to W [K, N] (row-major), as MatMulNBits defines it. */
export function rtnDequantize(q: RtnOutput, K: number, N: number, p: RtnParams): Float32Array {
  const shape = rtnShape(K, N, p);
  const w = new Float32Array(K * N);
  const mid = 1 << (p.bits - 1);
  for (let n = 0; n < N; n++) {
    for (let kb = 0; kb < shape.nBlocks; kb++) {
      const scale = q.scales[n * shape.nBlocks + kb];
      let zp = mid;
      if (q.zeroPoints) {
        const zb = q.zeroPoints[n * shape.zpCols + (p.bits === 8 ? kb : kb >> 1)];
        zp = p.bits === 8 ? zb : kb & 1 ? zb >> 4 : zb & 0x0f;
      }
      const o = (n * shape.nBlocks + kb) * shape.blobSize;
      for (let r = 0; r < p.blockSize && kb * p.blockSize + r < K; r++) {
        const code = p.bits === 8 ? q.B[o + r] : (q.B[o + (r >> 1)] >> (4 * (r & 1))) & 0x0f;
        w[(kb * p.blockSize + r) * N + n] = Math.fround((code - zp) * scale);
      }
    }
  }
  return w;
}
