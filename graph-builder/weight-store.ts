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
 * Layout: every tensor starts on a 4 KiB page (WEIGHT_ALIGNMENT; the data-file writer's rule with
 * `pageAlignFrom: 0`, common/onnx/data-file-writer.ts). Tensors are written in the order they
 * are added, so the same build order gives the same bytes.
 *
 * Data is streamed: a producer returns one tensor's bytes (or yields them in chunks), it is
 * written and dropped. A whole tensor is written in the background while the caller prepares
 * the next one (read, convert, transpose: CPU work overlaps disk writes), so memory stays at
 * about two tensors (or one chunk). Chunks are flushed before the next is requested, so
 * producers may reuse their buffers; scratchFloat32() gives double-buffered scratch space.
 */
import { open, type FileHandle } from 'node:fs/promises';
import {
  ExternalDataWriter, PAGE_BYTES, bytesPerElement, dataTypeOf, elementCount, markExternal, onnx, viewBytes,
  type DType, type Placement, type Tensor,
} from '../common/onnx/index.js';

/** Where every exported weight starts: a multiple of one page. */
export const WEIGHT_ALIGNMENT = PAGE_BYTES;

/** Bytes between background writeback requests (see startBackgroundSync). */
const SYNC_EVERY = 128 * 1024 * 1024;

/** Where one tensor lives inside the data file. */
export interface StoredTensor {
  name: string;
  dtype: DType;
  dims: number[];
  /** Byte offset in the data file (a multiple of WEIGHT_ALIGNMENT). */
  offset: number;
  length: number;
  /** The data file's name relative to the .onnx file (they sit in the same directory). */
  location: string;
}

/** Tensor data: a whole typed array / byte array, or chunks in row-major order. */
export type TensorData = ArrayBufferView | AsyncIterable<ArrayBufferView> | Iterable<ArrayBufferView>;

export interface WeightStoreOptions {
  /** Called after each new tensor is written (progress). */
  onStored?: (t: StoredTensor) => void;
}

export class WeightStore {
  readonly path: string;
  readonly location: string;
  private readonly data: ExternalDataWriter;
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

  private constructor(path: string, data: ExternalDataWriter, opts: WeightStoreOptions) {
    this.path = path;
    this.location = data.location;
    this.data = data;
    this.onStored = opts.onStored;
  }

  static async create(path: string, opts: WeightStoreOptions = {}): Promise<WeightStore> {
    return new WeightStore(path, await ExternalDataWriter.create(path, { pageAlignFrom: 0 }), opts);
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
    const placement = await this.data.begin(length);
    if (ArrayBuffer.isView(data)) {
      if (data.byteLength !== length) throw new Error(`weight ${name}: expected ${length} bytes, producer gave ${data.byteLength}`);
      this.pending = this.writeWhole(data, placement, name);
      this.pending.catch(() => undefined); // handled by whoever awaits it next
    } else {
      let written = 0;
      // Each chunk reaches the OS before the next is requested: producers may reuse buffers.
      const put = async (chunk: ArrayBufferView): Promise<void> => {
        written += chunk.byteLength;
        if (written > length) throw new Error(`weight ${name}: producer gave more than ${length} bytes`);
        await this.data.write(viewBytes(chunk));
        await this.data.flushed();
      };
      if (Symbol.asyncIterator in data) for await (const c of data) await put(c);
      else for (const c of data) await put(c);
      if (written !== length) throw new Error(`weight ${name}: expected ${length} bytes, producer gave ${written}`);
      this.data.end(placement, `weight ${name}`);
      this.startBackgroundSync();
    }
    this.end = placement.offset + length;
    const entry: StoredTensor = { name, dtype, dims: [...dims], offset: placement.offset, length, location: this.location };
    this.entries.set(name, entry);
    this.order.push(name);
    this.onStored?.(entry);
    return entry;
  }

  private async writeWhole(data: ArrayBufferView, placement: Placement, name: string): Promise<void> {
    await this.data.write(viewBytes(data));
    await this.data.flushed();
    this.data.end(placement, `weight ${name}`);
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
    if (this.syncing || this.data.position - this.syncedUpTo < SYNC_EVERY) return;
    this.syncedUpTo = this.data.position;
    this.syncing = (async () => {
      try {
        this.syncHandle ??= await open(this.data.tempPath, 'r');
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
    await this.data.commit();
  }

  async abort(): Promise<void> {
    await this.pending?.catch(() => undefined);
    await this.stopBackgroundSync();
    await this.data.abort();
  }
}

/** The initializer that points at a stored tensor (data_location = EXTERNAL). */
export function externalTensorProto(t: StoredTensor): Tensor {
  const proto = onnx.TensorProto.create({ name: t.name, dims: t.dims, dataType: dataTypeOf(t.dtype) });
  return markExternal(proto, t.location, t);
}
