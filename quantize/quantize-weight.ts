import { UserError } from '../common/errors.js';
import { allocateRtnOutput, rtnShape, type RtnOutput, type RtnParams } from './rtn.js';
import type { WeightTask } from './matmul-nbits.js';
import type { RtnWorkerPool, SlabSource } from './worker-pool.js';

/**
 * Quantises one weight on the worker pool: the weight is cut into slabs of about SLAB_BYTES
 * (whole blocks along K for a [K, N] weight, whole rows for a [N, K] one), each worker reads its
 * slab straight from the data file and writes its fixed region of the shared output arrays.
 */

const SLAB_BYTES = 4 * 1024 * 1024;

export async function quantizeWeight(pool: RtnWorkerPool, task: WeightTask, p: RtnParams): Promise<RtnOutput> {
  const { K, N } = task;
  const shape = rtnShape(K, N, p);
  const out = allocateRtnOutput(shape, p, true);
  const base: SlabSource = task.source.kind === 'external'
    ? { kind: 'file', file: task.source.file, offset: task.source.offset }
    : { kind: 'memory', data: toShared(task.source.bytes), offset: 0 };
  const at = (byteOffset: number): SlabSource => ({ ...base, offset: base.offset + byteOffset });
  const common = {
    K, N, bits: p.bits, blockSize: p.blockSize, symmetric: p.symmetric, clip: p.clip ?? false, halfScales: p.halfScales ?? false,
    outB: out.B.buffer as SharedArrayBuffer, outScales: out.scales.buffer as SharedArrayBuffer,
    outZp: (out.zeroPoints?.buffer ?? null) as SharedArrayBuffer | null,
  };
  const jobs: Promise<void>[] = [];
  if (task.layout === 'KN') {
    // Even block counts per slab: two 4-bit zero points share a byte.
    const rowBytes = N * 4;
    let perSlab = Math.max(2, Math.floor(SLAB_BYTES / (rowBytes * p.blockSize)));
    perSlab -= perSlab % 2;
    for (let kb = 0; kb < shape.nBlocks; kb += perSlab) {
      const end = Math.min(shape.nBlocks, kb + perSlab);
      const k0 = kb * p.blockSize;
      const k1 = Math.min(K, end * p.blockSize);
      jobs.push(pool.run({ ...common, source: at(k0 * rowBytes), byteLength: (k1 - k0) * rowBytes, layout: 0, start: kb, end }));
    }
  } else {
    const rowBytes = K * 4;
    const perSlab = Math.max(1, Math.floor(SLAB_BYTES / rowBytes));
    for (let n = 0; n < N; n += perSlab) {
      const end = Math.min(N, n + perSlab);
      jobs.push(pool.run({ ...common, source: at(n * rowBytes), byteLength: (end - n) * rowBytes, layout: 1, start: n, end }));
    }
  }
  try {
    await Promise.all(jobs);
  } catch (err) {
    // The kernel's only data error: name the weight in one line instead of a worker stack trace.
    const finite = /weight column \d+, block \d+ is not finite \(NaN or infinity\)/.exec(String((err as Error)?.message ?? err));
    if (finite) throw new UserError(`${task.weightName}: ${finite[0]}; a model directory's weights must be finite numbers`);
    throw err;
  }
  return out;
}

function toShared(bytes: Uint8Array): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(bytes.byteLength);
  new Uint8Array(sab).set(bytes);
  return sab;
}
