import { availableParallelism, endianness } from 'node:os';
import { Worker } from 'node:worker_threads';
import { rtnQuantizeSlab } from './rtn.js';

/**
 * A pool of worker threads that quantise weight slabs. Each job names a byte range of a file
 * (or a shared in-memory copy) and writes into SharedArrayBuffers the caller allocated, at
 * positions fixed by the job, so the output never depends on which worker ran what or when.
 *
 * The workers run the kernel from its source text (`rtnQuantizeSlab.toString()`), which keeps
 * one implementation for tests, compiled builds and workers without a separate worker file.
 */

export type SlabSource =
  | { kind: 'file'; file: string; offset: number }
  | { kind: 'memory'; data: SharedArrayBuffer; offset: number };

export interface SlabJob {
  source: SlabSource;
  /** Bytes of float32 source read for this slab (starting at source.offset). */
  byteLength: number;
  layout: 0 | 1;
  K: number;
  N: number;
  start: number;
  end: number;
  bits: number;
  blockSize: number;
  symmetric: boolean;
  clip: boolean;
  halfScales: boolean;
  outB: SharedArrayBuffer;
  outScales: SharedArrayBuffer;
  outZp: SharedArrayBuffer | null;
}

const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const rtnQuantizeSlab = ${rtnQuantizeSlab.toString()};
const fds = new Map();
let scratch = new ArrayBuffer(0);
function readInto(file, offset, length) {
  let fd = fds.get(file);
  if (fd === undefined) { fd = fs.openSync(file, 'r'); fds.set(file, fd); }
  if (scratch.byteLength < length) scratch = new ArrayBuffer(Math.max(length, scratch.byteLength * 2));
  const bytes = new Uint8Array(scratch, 0, length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, bytes, done, length - done, offset + done);
    if (n === 0) throw new Error(file + ': unexpected end of file at byte ' + (offset + done));
    done += n;
  }
  return new Float32Array(scratch, 0, length / 4);
}
parentPort.on('message', (job) => {
  try {
    const s = job.source;
    const src = s.kind === 'file'
      ? readInto(s.file, s.offset, job.byteLength)
      : new Float32Array(s.data, s.offset, job.byteLength / 4);
    rtnQuantizeSlab(src, job.layout, job.K, job.N, job.start, job.end, job.bits, job.blockSize, job.symmetric, job.clip, job.halfScales,
      new Uint8Array(job.outB), new Float32Array(job.outScales), job.outZp ? new Uint8Array(job.outZp) : null);
    parentPort.postMessage({ id: job.id });
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: String(err && err.stack || err) });
  }
});
`;

interface Pending {
  job: SlabJob & { id: number };
  resolve: () => void;
  reject: (err: Error) => void;
}

export class RtnWorkerPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<Worker, Pending>();
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number = availableParallelism()) {
    if (endianness() !== 'LE') throw new Error('quantisation assumes a little-endian machine (ONNX data is little-endian)');
    for (let i = 0; i < Math.max(1, size); i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.on('message', (msg: { id: number; error?: string }) => this.onDone(w, msg));
      w.on('error', (err) => this.onCrash(w, err));
      w.unref();
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run(job: SlabJob): Promise<void> {
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ job: { ...job, id: this.nextId++ }, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const p = this.queue.shift()!;
      this.running.set(w, p);
      w.ref();
      w.postMessage(p.job);
    }
  }

  private onDone(w: Worker, msg: { id: number; error?: string }): void {
    // A job that finishes while close() terminates the pool was already rejected there, and its
    // worker must stay ref'd until terminated: unref'ing it here let the event loop run dry while
    // close() awaited terminate(), and the process exited 13 ("unsettled top-level await") instead
    // of reporting the error that closed the pool (the NaN-weight quantize, ~1 run in 7).
    if (this.closed) return;
    const p = this.running.get(w);
    this.running.delete(w);
    w.unref();
    this.idle.push(w);
    if (p) {
      if (msg.error) p.reject(new Error(`quantisation worker failed: ${msg.error}`));
      else p.resolve();
    }
    this.pump();
  }

  private onCrash(w: Worker, err: Error): void {
    const p = this.running.get(w);
    this.running.delete(w);
    if (p) p.reject(err);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new Error('worker pool closed'));
    for (const [w, p] of this.running) { p.reject(new Error('worker pool closed')); this.running.delete(w); }
    // Idle workers are unref'd; an unref'd worker's terminate() does not keep the event loop alive,
    // so without ref() the process could run out of work while awaiting it and exit with Node's
    // "unsettled top-level await" code 13 (onDone leaves the refs alone once closed).
    for (const w of this.workers) w.ref();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
