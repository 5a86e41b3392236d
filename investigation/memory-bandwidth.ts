import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../graph-builder/graph-builder.js';
import { modelBytes } from '../graph-builder/model.js';

/**
 * Memory bandwidth of this machine, best of `reps`, in GB/s (1e9 bytes):
 *
 * - copy (STREAM "copy" convention: a copy of n bytes counts 2n bytes moved, one read and one
 *   write). Single-thread: `Float64Array.prototype.set` (a memcpy). Multi-thread: `threads`
 *   workers each copying their own arrays at the same moment (started together through a
 *   SharedArrayBuffer barrier, timed from the release until the last one reports).
 * - read: onnxruntime's ReduceSum over one large float32 tensor (fed without a copy), with 1 and
 *   `threads` intra-op threads: the streaming-read rate of the engine that runs the models,
 *   which is what a weight-bound decode step needs. Copy figures understate it (a copy also
 *   pays write-allocate traffic).
 */

export interface BandwidthResult {
  bytesPerCopy: number;
  reps: number;
  singleThreadGBps: number;
  threads: number;
  multiThreadGBps: number;
  /** onnxruntime ReduceSum read rate, 1 intra-op thread and `threads`. */
  readSingleThreadGBps: number;
  readMultiThreadGBps: number;
  /** The best of all four: the figure the decode bound divides by. */
  bestGBps: number;
}

/**
 * ReduceSum over a float32 vector of `bytes` (opset 17, no axes: reduce all, keepdims 0).
 *
 *   x [n] ──ReduceSum──▶ sum []
 */
async function ortRead(bytes: number, reps: number, threads: number): Promise<number> {
  const n = Math.floor(bytes / 4);
  const b = new GraphBuilder('read_bandwidth');
  const x = b.input('x', 'float32', [n]);
  b.output('sum', 'float32', [], b.op('ReduceSum', [x], { attrs: { keepdims: 0 } }));
  const session = await ort.InferenceSession.create(modelBytes(b), {
    executionMode: 'sequential', graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3,
  });
  try {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (i & 1023) * 1e-3;
    const feeds = { x: new ort.Tensor('float32', data, [n]) };
    await session.run(feeds);
    let best = Infinity;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      await session.run(feeds);
      best = Math.min(best, performance.now() - t0);
    }
    return (n * 4) / (best / 1000) / 1e9;
  } finally {
    await session.release();
  }
}

function copyOnceMs(src: Float64Array, dst: Float64Array): number {
  const t0 = performance.now();
  dst.set(src);
  return performance.now() - t0;
}

function singleThread(bytes: number, reps: number): number {
  const n = Math.floor(bytes / 8);
  const src = new Float64Array(n);
  const dst = new Float64Array(n);
  for (let i = 0; i < n; i++) src[i] = i;
  copyOnceMs(src, dst); // fault both arrays in
  let best = Infinity;
  for (let r = 0; r < reps; r++) best = Math.min(best, copyOnceMs(src, dst));
  return (2 * n * 8) / (best / 1000) / 1e9;
}

// Plain JS so the same worker runs under tsc output and under vitest.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { n, reps, control } = workerData;
const gate = new Int32Array(control);
const src = new Float64Array(n), dst = new Float64Array(n);
for (let i = 0; i < n; i++) src[i] = i;
dst.set(src);
parentPort.postMessage('ready');
for (let r = 1; r <= reps; r++) {
  Atomics.wait(gate, 0, r - 1);
  dst.set(src);
  parentPort.postMessage('done');
}
`;

async function multiThread(bytes: number, reps: number, threads: number): Promise<number> {
  const n = Math.floor(bytes / 8);
  const control = new SharedArrayBuffer(4);
  const gate = new Int32Array(control);
  const workers = Array.from({ length: threads }, () => new Worker(WORKER_SOURCE, { eval: true, workerData: { n, reps, control } }));
  const pending: Array<() => void> = [];
  let messages = 0;
  for (const w of workers) {
    w.on('message', () => { messages += 1; pending.shift()?.(); });
  }
  const waitMessages = async (count: number): Promise<void> => {
    while (messages < count) await new Promise<void>((r) => pending.push(r));
  };
  try {
    await waitMessages(threads);
    let best = Infinity;
    for (let r = 1; r <= reps; r++) {
      const t0 = performance.now();
      Atomics.store(gate, 0, r);
      Atomics.notify(gate, 0);
      await waitMessages(threads * (r + 1));
      best = Math.min(best, performance.now() - t0);
    }
    return (threads * 2 * n * 8) / (best / 1000) / 1e9;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

export async function measureBandwidth(opts: { bytes: number; reps: number; threads: number }): Promise<BandwidthResult> {
  const single = singleThread(opts.bytes, opts.reps);
  const multi = opts.threads > 1 ? await multiThread(opts.bytes, opts.reps, opts.threads) : single;
  const read1 = await ortRead(opts.bytes, opts.reps, 1);
  const readN = opts.threads > 1 ? await ortRead(opts.bytes, opts.reps, opts.threads) : read1;
  const r2 = (v: number): number => Math.round(v * 100) / 100;
  return {
    bytesPerCopy: Math.floor(opts.bytes / 8) * 8,
    reps: opts.reps,
    singleThreadGBps: r2(single),
    threads: opts.threads,
    multiThreadGBps: r2(multi),
    readSingleThreadGBps: r2(read1),
    readMultiThreadGBps: r2(readN),
    bestGBps: r2(Math.max(single, multi, read1, readN)),
  };
}
