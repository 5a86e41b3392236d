/**
 * Streams checkpoint tensors into a graph's weight store, one tensor at a time
 * (read as float32, transform, write, drop).
 *
 * Usage:
 *   const w = await matmulWeight(b, src, 'thinker.model.layers.0.self_attn.q_proj.weight'); // [in,out]
 *   const g = await plainWeight(b, src, 'thinker.model.norm.weight');                     // as stored
 *   const e = await rowStreamedWeight(b, src, 'thinker.model.embed_tokens.weight');       // big, in row blocks
 *
 * Initializer names are the checkpoint tensor names. Layouts:
 *   - matmulWeight: a torch Linear weight [out, in] is stored TRANSPOSED as [in, out], so the
 *     graph does `x @ W` with a plain MatMul (the layout MatMulNBits quantization expects).
 *   - plainWeight / rowStreamedWeight: stored exactly in the checkpoint's shape.
 * All are float32 (the contract's float model); a name already in the store is not re-read.
 */
import type { TensorSource } from '../checkpoint/tensor-source.js';
import type { GraphBuilder } from './graph-builder.js';

/** Rows per block when streaming a large 2-D tensor (an embedding: 4096 x 2048 x 4 B = 32 MiB). */
export const ROW_BLOCK = 4096;

/** A torch Linear weight [out, in], stored as [in, out]. */
export async function matmulWeight(b: GraphBuilder, src: TensorSource, name: string): Promise<string> {
  const shape = src.info(name).shape;
  if (shape.length !== 2) throw new Error(`${name}: expected a 2-D Linear weight, got [${shape}]`);
  const [out, inp] = shape;
  return b.weight(name, 'float32', [inp, out], async () => {
    const torch = await src.readFloat32(name);
    return transpose2d(torch, out, inp, b.weights?.scratchFloat32(torch.length));
  });
}

/** A tensor stored as float32 in its checkpoint shape. */
export async function plainWeight(b: GraphBuilder, src: TensorSource, name: string): Promise<string> {
  const shape = src.info(name).shape;
  return b.weight(name, 'float32', shape, () => src.readFloat32(name));
}

/** A large 2-D tensor stored as float32 in its checkpoint shape, read `ROW_BLOCK` rows at a time. */
export async function rowStreamedWeight(b: GraphBuilder, src: TensorSource, name: string, rowBlock = ROW_BLOCK): Promise<string> {
  const shape = src.info(name).shape;
  if (shape.length !== 2) throw new Error(`${name}: expected a 2-D tensor, got [${shape}]`);
  const rows = shape[0];
  return b.weight(name, 'float32', shape, () => (async function* () {
    for (let r = 0; r < rows; r += rowBlock) yield await src.readFloat32Rows(name, r, Math.min(rowBlock, rows - r));
  })());
}

/**
 * Row-major [rows, cols] -> [cols, rows]. Walks 16-row strips column by column: each output
 * run of 16 floats is contiguous and the 16 source rows stay in cache, which measured ~8x
 * faster than square 64x64 tiles in V8 (investigation/INVESTIGATION.md, export benchmark).
 */
export function transpose2d(src: Float32Array, rows: number, cols: number, into?: Float32Array): Float32Array {
  if (src.length !== rows * cols) throw new Error(`transpose2d: ${src.length} elements is not ${rows}x${cols}`);
  if (into && into.length !== src.length) throw new Error(`transpose2d: output has ${into.length} elements, need ${src.length}`);
  const out = into ?? new Float32Array(src.length);
  const STRIP = 16;
  for (let r0 = 0; r0 < rows; r0 += STRIP) {
    const r1 = Math.min(r0 + STRIP, rows);
    for (let c = 0; c < cols; c++) {
      let o = c * rows + r0;
      for (let s = r0 * cols + c, r = r0; r < r1; r++, o++, s += cols) out[o] = src[s];
    }
  }
  return out;
}
