import { writeFile } from 'node:fs/promises';
import { f32ToBf16, f32ToF16 } from '../common/float16.js';
import type { SafetensorsDtype } from './tensor-source.js';

/**
 * Minimal safetensors writer for tests (crafting good and deliberately bad files).
 * Not a production writer: it holds everything in memory.
 */

export interface TestTensor { name: string; dtype: SafetensorsDtype; shape: number[]; data: Uint8Array }

/** Encodes float values into the bytes of a float dtype (little-endian). */
export function encodeFloats(dtype: 'BF16' | 'F16' | 'F32', values: ArrayLike<number>): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(values).buffer);
  const out = new Uint8Array(values.length * 2);
  const enc = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < values.length; i += 1) {
    const h = enc(values[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Builds the file bytes from a header object (written verbatim) and a data area. */
export function safetensorsBytes(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const text = headerText ?? JSON.stringify(header);
  const hdr = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + hdr.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hdr.length), true);
  out.set(hdr, 8);
  out.set(data, 8 + hdr.length);
  return out;
}

/** Lays the tensors out back to back and returns the header object and data area. */
export function layoutTensors(
  tensors: TestTensor[], metadata?: Record<string, string>,
): { header: Record<string, unknown>; data: Uint8Array } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let pos = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.data.length] };
    pos += t.data.length;
  }
  const data = new Uint8Array(pos);
  pos = 0;
  for (const t of tensors) {
    data.set(t.data, pos);
    pos += t.data.length;
  }
  return { header, data };
}

export async function writeSafetensors(
  path: string, tensors: TestTensor[], metadata?: Record<string, string>,
): Promise<void> {
  const { header, data } = layoutTensors(tensors, metadata);
  await writeFile(path, safetensorsBytes(header, data));
}

/** A float tensor filled with `fill(i)` for element i. */
export function floatTensor(
  name: string, shape: number[], dtype: 'BF16' | 'F16' | 'F32' = 'BF16',
  fill: (i: number) => number = (i) => (i % 7) - 3,
): TestTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: encodeFloats(dtype, Array.from({ length: n }, (_, i) => fill(i))) };
}
