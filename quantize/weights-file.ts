import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { AtomicFileWriter } from '../common/atomic.js';
import { UserError, fsError } from '../common/errors.js';
import type { TensorProto } from '../common/onnx-model.js';

/**
 * The shared external-data file of a set of graphs. Every tensor is keyed by
 * sha256(data type, dims, bytes) and written once; later tensors with the same key (the other
 * graph's copy, a weight shared by two nodes) point at the first copy's offset.
 * Large tensors start on a 4 KiB boundary (so a runtime can memory-map them), others on 64 bytes.
 */

/** Where a tensor landed in the data file. */
export interface Placement {
  offset: number;
  length: number;
}

export interface DataFileStats {
  /** Initializer references resolved to the file (one per graph per initializer). */
  references: number;
  /** Distinct tensors actually written. */
  uniqueTensors: number;
  /** Bytes of tensor data written (padding excluded). */
  bytesWritten: number;
  /** Bytes that references would have added without de-duplication. */
  bytesSaved: number;
  /** Final file size (padding included). */
  fileBytes: number;
}

const PAGE_ALIGN_FROM = 64 * 1024;
const STREAM_CHUNK = 8 * 1024 * 1024;

export class DedupDataFile {
  private readonly byHash = new Map<string, Placement>();
  /** External source range -> placement, to skip re-hashing a range another graph already wrote. */
  private readonly bySource = new Map<string, Placement>();
  readonly stats: DataFileStats = { references: 0, uniqueTensors: 0, bytesWritten: 0, bytesSaved: 0, fileBytes: 0 };

  constructor(private readonly writer: AtomicFileWriter) {}

  /** Adds in-memory bytes. */
  async addBytes(dataType: number, dims: readonly number[], bytes: Uint8Array): Promise<Placement> {
    const h = keyHash(dataType, dims);
    h.update(bytes);
    const key = h.digest('hex');
    const seen = this.reuse(key, bytes.byteLength);
    if (seen) return seen;
    const offset = await this.startTensor(bytes.byteLength);
    await this.writer.write(bytes);
    return this.record(key, offset, bytes.byteLength);
  }

  /** Adds a byte range of another file, streamed (hashed in one pass, copied in a second if new). */
  async addFileRange(dataType: number, dims: readonly number[], file: string, offset: number, length: number): Promise<Placement> {
    const sourceKey = `${dataType}|${dims.join(',')}|${file}|${offset}|${length}`;
    const known = this.bySource.get(sourceKey);
    if (known) {
      this.stats.references += 1;
      this.stats.bytesSaved += length;
      return known;
    }
    const h = keyHash(dataType, dims);
    await readRange(file, offset, length, false, (chunk) => { h.update(chunk); });
    const key = h.digest('hex');
    let placement = this.reuse(key, length);
    if (!placement) {
      const at = await this.startTensor(length);
      await readRange(file, offset, length, true, (chunk) => this.writer.write(chunk));
      placement = this.record(key, at, length);
    }
    this.bySource.set(sourceKey, placement);
    return placement;
  }

  /** Counts one more reference to a tensor already placed (the caller knows it is identical). */
  countReuse(p: Placement): void {
    this.stats.references += 1;
    this.stats.bytesSaved += p.length;
  }

  private reuse(key: string, length: number): Placement | undefined {
    const p = this.byHash.get(key);
    if (!p) return undefined;
    this.stats.references += 1;
    this.stats.bytesSaved += length;
    return p;
  }

  private async startTensor(length: number): Promise<number> {
    await this.writer.align(length >= PAGE_ALIGN_FROM ? 4096 : 64);
    return this.writer.position;
  }

  private record(key: string, offset: number, length: number): Placement {
    const p = { offset, length };
    this.byHash.set(key, p);
    this.stats.references += 1;
    this.stats.uniqueTensors += 1;
    this.stats.bytesWritten += length;
    this.stats.fileBytes = this.writer.position;
    return p;
  }
}

function keyHash(dataType: number, dims: readonly number[]): Hash {
  return createHash('sha256').update(`${dataType}:${dims.join('x')}:`);
}

/** Streams [offset, offset+length) of a file to `sink` in bounded chunks. */
async function readRange(
  file: string, offset: number, length: number, copy: boolean, sink: (chunk: Uint8Array) => unknown,
): Promise<void> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  try {
    const buf = new Uint8Array(Math.min(STREAM_CHUNK, Math.max(length, 1)));
    let done = 0;
    while (done < length) {
      const want = Math.min(buf.byteLength, length - done);
      const { bytesRead } = await fh.read(buf, 0, want, offset + done);
      if (bytesRead === 0) throw new UserError(`${file}: unexpected end of file at byte ${offset + done}`);
      // A write stream keeps the chunk until flushed, so it gets a copy; a hash does not need one.
      await sink(copy ? buf.slice(0, bytesRead) : buf.subarray(0, bytesRead));
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** Points an initializer at its placement in the data file (`location` relative to the model). */
export function setExternal(t: TensorProto, location: string, p: Placement): void {
  t.dataLocation = 1;
  t.externalData = [
    { key: 'location', value: location },
    { key: 'offset', value: String(p.offset) },
    { key: 'length', value: String(p.length) },
  ];
  delete t.rawData;
  for (const f of ['floatData', 'int32Data', 'int64Data', 'doubleData', 'uint64Data', 'stringData'] as const) {
    if (t[f] && (t[f] as unknown[]).length) (t as Record<string, unknown>)[f] = [];
  }
}
