/**
 * One external-data file shared by one or more ONNX graphs (e.g. `decoder_weights.data`
 * behind both decoder_init.onnx and decoder_step.onnx).
 *
 * Usage:
 *   const store = await WeightStore.create(join(outDir, 'decoder_weights.data'));
 *   const w = await store.add('thinker.model.norm.weight', 'float32', [H], async () => readIt());
 *   const again = await store.add('thinker.model.norm.weight', ...);   // same entry, nothing written
 *   graph.addExternalInitializer(w)          // GraphBuilder does this via b.weight(...)
 *   await store.commit();                    // or store.abort() on failure
 *
 * Layout: every tensor starts at a multiple of WEIGHT_ALIGNMENT (4096 bytes, one page), so
 * onnxruntime can memory-map each tensor without copying and SIMD loads are aligned; the
 * padding costs < 4 KiB per tensor (about 1 MiB for a 1.7B decoder). Tensors are written in
 * the order they are added, so the same build order gives the same bytes.
 *
 * Data is streamed: a producer returns one tensor's bytes (or yields them in chunks), it is
 * written and dropped. A whole tensor is written in the background while the caller prepares
 * the next one (read, convert, transpose: CPU work overlaps disk writes), so memory stays at
 * about two tensors (or one chunk). Chunks are flushed before the next is requested, so
 * producers may reuse their buffers; scratchFloat32() gives double-buffered scratch space.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { AtomicFileWriter } from '../common/atomic.js';
import { onnx, dataTypeOf, bytesPerElement, bytesView, elementCount, type DType, type ITensorProto } from './onnx-types.js';

export const WEIGHT_ALIGNMENT = 4096;

/** Bytes between background writeback requests (see startBackgroundSync). */
const SYNC_EVERY = 128 * 1024 * 1024;

/** Where one tensor lives inside the data file. */
export interface StoredTensor {
  name: string;
  dtype: DType;
  dims: number[];
  /** Byte offset in the data file (a multiple of the store's alignment). */
  offset: number;
  length: number;
  /** The data file's name relative to the .onnx file (they sit in the same directory). */
  location: string;
}

/** Tensor data: a whole typed array / byte array, or chunks in row-major order. */
export type TensorData = ArrayBufferView | AsyncIterable<ArrayBufferView> | Iterable<ArrayBufferView>;

export interface WeightStoreOptions {
  /** Byte alignment of every tensor (default WEIGHT_ALIGNMENT). */
  alignment?: number;
  /** Called after each new tensor is written (progress). */
  onStored?: (t: StoredTensor) => void;
}

export class WeightStore {
  readonly path: string;
  readonly location: string;
  readonly alignment: number;
  private readonly writer: AtomicFileWriter;
  private readonly entries = new Map<string, StoredTensor>();
  private readonly order: string[] = [];
  private readonly onStored: ((t: StoredTensor) => void) | undefined;
  private readonly scratch = [new Float32Array(0), new Float32Array(0)];
  private slot = 0;
  private pending: Promise<void> | undefined;
  private end = 0;
  private syncing: Promise<void> | undefined;
  private syncHandle: FileHandle | undefined;
  private syncedUpTo = 0;

  private constructor(path: string, writer: AtomicFileWriter, opts: WeightStoreOptions) {
    this.path = path;
    this.location = basename(path);
    this.writer = writer;
    this.alignment = opts.alignment ?? WEIGHT_ALIGNMENT;
    this.onStored = opts.onStored;
    if (!Number.isInteger(this.alignment) || this.alignment <= 0) throw new Error(`bad alignment ${this.alignment}`);
  }

  static async create(path: string, opts: WeightStoreOptions = {}): Promise<WeightStore> {
    return new WeightStore(path, await AtomicFileWriter.create(path), opts);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  get(name: string): StoredTensor | undefined {
    return this.entries.get(name);
  }

  /** Every stored tensor in file order. */
  list(): StoredTensor[] {
    return this.order.map((n) => this.entries.get(n) as StoredTensor);
  }

  /** Bytes the file holds once pending writes finish (including alignment padding). */
  get size(): number {
    return this.end;
  }

  /**
   * Stores a tensor once. `produce` is only called when `name` is new; when it already exists
   * (same dtype and dims required) the existing entry is returned and nothing is read.
   * A whole-array result is written in the background (the next add() or commit() waits for
   * it and reports its errors); chunked results are written before add() returns.
   */
  async add(name: string, dtype: DType, dims: readonly number[], produce: () => TensorData | Promise<TensorData>): Promise<StoredTensor> {
    const existing = this.entries.get(name);
    if (existing) {
      if (existing.dtype !== dtype || existing.dims.join(',') !== dims.join(',')) {
        throw new Error(`weight ${name} stored twice with different types: ${existing.dtype}[${existing.dims}] vs ${dtype}[${dims}]`);
      }
      return existing;
    }
    const length = elementCount(dims) * bytesPerElement(dtype);
    const data = await produce(); // overlaps the previous tensor's background write
    await this.pending; // the previous write is done (and its error, if any, surfaces here)
    this.pending = undefined;
    await this.writer.align(this.alignment);
    const offset = this.writer.position;
    if (ArrayBuffer.isView(data)) {
      if (data.byteLength !== length) throw new Error(`weight ${name}: expected ${length} bytes, producer gave ${data.byteLength}`);
      this.pending = this.writeWhole(data);
      this.pending.catch(() => undefined); // handled by whoever awaits it next
    } else {
      let written = 0;
      // Each chunk reaches the OS before the next is requested: producers may reuse buffers.
      const put = async (chunk: ArrayBufferView): Promise<void> => {
        written += chunk.byteLength;
        if (written > length) throw new Error(`weight ${name}: producer gave more than ${length} bytes`);
        await this.writer.write(bytesView(chunk));
        await this.writer.flushed();
      };
      if (Symbol.asyncIterator in data) for await (const c of data) await put(c);
      else for (const c of data) await put(c);
      if (written !== length) throw new Error(`weight ${name}: expected ${length} bytes, producer gave ${written}`);
      this.startBackgroundSync();
    }
    this.end = offset + length;
    const entry: StoredTensor = { name, dtype, dims: [...dims], offset, length, location: this.location };
    this.entries.set(name, entry);
    this.order.push(name);
    this.onStored?.(entry);
    return entry;
  }

  private async writeWhole(data: ArrayBufferView): Promise<void> {
    await this.writer.write(bytesView(data));
    await this.writer.flushed();
    this.startBackgroundSync();
  }

  /**
   * A float32 buffer of `n` elements for a producer to fill and return (at most one per
   * produce call). Two buffers alternate: while one is being written in the background the
   * next tensor fills the other. Saves one large allocation per tensor, which cut GC and
   * page-fault time (investigation/INVESTIGATION.md).
   */
  scratchFloat32(n: number): Float32Array {
    this.slot ^= 1;
    if (this.scratch[this.slot].length < n) this.scratch[this.slot] = new Float32Array(n);
    return this.scratch[this.slot].subarray(0, n);
  }

  /**
   * Every SYNC_EVERY bytes, asks the OS to write the file's dirty pages to disk in the
   * background (fdatasync on a second descriptor; it works per file). Disk writeback then
   * overlaps the CPU work of the next tensors instead of all happening in commit()'s fsync.
   */
  private startBackgroundSync(): void {
    if (this.syncing || this.writer.position - this.syncedUpTo < SYNC_EVERY) return;
    this.syncedUpTo = this.writer.position;
    this.syncing = (async () => {
      try {
        this.syncHandle ??= await open(this.writer.tempPath, 'r');
        await this.syncHandle.datasync();
      } catch {
        // Best effort: commit() fsyncs everything anyway.
      } finally {
        this.syncing = undefined;
      }
    })();
  }

  private async stopBackgroundSync(): Promise<void> {
    await this.syncing;
    this.syncing = undefined;
    await this.syncHandle?.close().catch(() => undefined);
    this.syncHandle = undefined;
  }

  async commit(): Promise<void> {
    try {
      await this.pending;
    } catch (err) {
      await this.abort();
      throw err;
    }
    await this.stopBackgroundSync();
    await this.writer.commit();
  }

  async abort(): Promise<void> {
    await this.pending?.catch(() => undefined);
    await this.stopBackgroundSync();
    await this.writer.abort();
  }
}

/** The initializer that points at a stored tensor (data_location = EXTERNAL). */
export function externalTensorProto(t: StoredTensor): ITensorProto {
  return onnx.TensorProto.create({
    name: t.name,
    dims: t.dims,
    dataType: dataTypeOf(t.dtype),
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      onnx.StringStringEntryProto.create({ key: 'location', value: t.location }),
      onnx.StringStringEntryProto.create({ key: 'offset', value: String(t.offset) }),
      onnx.StringStringEntryProto.create({ key: 'length', value: String(t.length) }),
    ],
  });
}
