/** Bit-exact conversions between float32 and the 16-bit float formats safetensors uses. */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits -> float32 (exact: bf16 is the top half of a float32). */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** IEEE half bits -> float32. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> IEEE half bits, round to nearest even, overflow to infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rem > half || (rem === half && (out & 1))) out += 1;
    return sign | out;
  }
  const rem = mant & 0x1fff;
  let out = (e << 10) | (mant >>> 13);
  if (rem > 0x1000 || (rem === 0x1000 && (out & 1))) out += 1;
  return sign | out;
}

/** Converts a little-endian bf16 byte buffer to float32. */
export function bf16BytesToF32(src: Uint8Array, out = new Float32Array(src.byteLength / 2)): Float32Array {
  const dst = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0, j = 0; i < out.length; i += 1, j += 2) dst[i] = (src[j] | (src[j + 1] << 8)) << 16;
  return out;
}

/** Converts a little-endian f16 byte buffer to float32. */
export function f16BytesToF32(src: Uint8Array, out = new Float32Array(src.byteLength / 2)): Float32Array {
  for (let i = 0, j = 0; i < out.length; i += 1, j += 2) out[i] = f16ToF32(src[j] | (src[j + 1] << 8));
  return out;
}

/** Converts float32 values to little-endian f16 bytes. */
export function f32ToF16Bytes(src: Float32Array, out = new Uint8Array(src.length * 2)): Uint8Array {
  for (let i = 0, j = 0; i < src.length; i += 1, j += 2) {
    const h = f32ToF16(src[i]);
    out[j] = h & 0xff;
    out[j + 1] = h >>> 8;
  }
  return out;
}
