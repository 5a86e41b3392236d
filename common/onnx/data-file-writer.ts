import { basename } from 'node:path';
import { AtomicFileWriter } from '../atomic.js';
import { streamRange } from './byte-range.js';
import type { Placement } from './tensor-data.js';

/**
 * The one writer of ONNX external-data files. Every stage that writes tensor bytes beside a
 * graph (export's weight store, the quantiser's de-duplicating data file, AWQ smoothing) places
 * them through it, so the layout rule lives here once:
 *
 *   a tensor of at least `pageAlignFrom` bytes starts on a 4 KiB page boundary (onnxruntime can
 *   memory-map it without copying, and SIMD loads are aligned); a smaller one on 64 bytes (a
 *   cache line), so small tensors do not cost a page of padding each.
 *
 * The export passes `pageAlignFrom: 0` (every weight on a page: < 4 KiB padding per tensor,
 * about 1 MiB for a 1.7B decoder); the quantiser and AWQ keep the 64 KiB default.
 *
 * Usage:
 *   const data = await ExternalDataWriter.create(join(dir, 'decoder_weights.int4.data'));
 *   const p = await data.writeTensor(bytes);                 // or begin(length) + write() + end(p)
 *   markExternal(initializer, data.location, p);             // tensor-data.ts
 *   await data.commit();                                     // or data.abort()
 */

export const PAGE_BYTES = 4096;
const SMALL_ALIGNMENT = 64;
/** Default size from which tensors start on a page. */
export const PAGE_ALIGN_FROM = 64 * 1024;

/** Where a tensor of `length` bytes may start: the alignment rule. */
export function tensorAlignment(length: number, pageAlignFrom = PAGE_ALIGN_FROM): number {
  return length >= pageAlignFrom ? PAGE_BYTES : SMALL_ALIGNMENT;
}

export interface DataFileLayout {
  /** Tensors of at least this many bytes start on a 4 KiB page (default 64 KiB; 0: all). */
  pageAlignFrom?: number;
}

export class ExternalDataWriter {
  /** The data file's name as initializers name it (it sits beside the .onnx files). */
  readonly location: string;
  private readonly pageAlignFrom: number;

  /** Writes through `file` (which the caller commits, e.g. one of withAtomicWriters' writers). */
  constructor(private readonly file: AtomicFileWriter, layout: DataFileLayout = {}) {
    this.location = basename(file.target);
    this.pageAlignFrom = layout.pageAlignFrom ?? PAGE_ALIGN_FROM;
  }

  /** A writer that owns its file: call commit() or abort(). */
  static async create(path: string, layout: DataFileLayout = {}): Promise<ExternalDataWriter> {
    return new ExternalDataWriter(await AtomicFileWriter.create(path), layout);
  }

  /** Bytes written so far (padding included). */
  get position(): number { return this.file.position; }

  /** The temp file being written (for a second descriptor, e.g. background fdatasync). */
  get tempPath(): string { return this.file.tempPath; }

  /** Pads to where a tensor of `length` bytes starts and returns its placement; then write() it and end(). */
  async begin(length: number): Promise<Placement> {
    await this.file.align(tensorAlignment(length, this.pageAlignFrom));
    return { offset: this.file.position, length };
  }

  /** Appends bytes of the current tensor (the chunk is held until flushed: do not reuse it before). */
  async write(chunk: Uint8Array): Promise<void> {
    await this.file.write(chunk);
  }

  /** Resolves once every chunk written so far has reached the OS (callers may then reuse buffers). */
  async flushed(): Promise<void> {
    await this.file.flushed();
  }

  /** Checks that the tensor begun at `p` got exactly its bytes. */
  end(p: Placement, what: string): Placement {
    const wrote = this.file.position - p.offset;
    if (wrote !== p.length) throw new Error(`${what}: wrote ${wrote} bytes, expected ${p.length}`);
    return p;
  }

  /** Writes one whole tensor. */
  async writeTensor(bytes: Uint8Array, what = 'tensor'): Promise<Placement> {
    const p = await this.begin(bytes.byteLength);
    await this.write(bytes);
    return this.end(p, what);
  }

  /** Copies a byte range of another file in as one tensor, streamed. */
  async copyRange(file: string, offset: number, length: number, what = file): Promise<Placement> {
    const p = await this.begin(length);
    await streamRange(file, offset, length, (chunk) => this.write(chunk), { copy: true });
    return this.end(p, what);
  }

  async commit(): Promise<void> {
    await this.file.commit();
  }

  async abort(): Promise<void> {
    await this.file.abort();
  }
}
