import { createHash, type Hash } from 'node:crypto';
import { streamRange, type ExternalDataWriter, type Placement } from '../common/onnx/index.js';

/**
 * The shared external-data file of a set of graphs, de-duplicated: every tensor is keyed by
 * sha256(data type, dims, bytes) and written once; later tensors with the same key (the other
 * graph's copy, a weight shared by two nodes) point at the first copy's placement. The bytes and
 * their alignment are the data-file writer's (common/onnx/data-file-writer.ts).
 */

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

export class DedupDataFile {
  private readonly byHash = new Map<string, Placement>();
  /** External source range -> placement, to skip re-hashing a range another graph already wrote. */
  private readonly bySource = new Map<string, Placement>();
  readonly stats: DataFileStats = { references: 0, uniqueTensors: 0, bytesWritten: 0, bytesSaved: 0, fileBytes: 0 };

  constructor(private readonly data: ExternalDataWriter) {}

  /** The data file's name as initializers name it. */
  get location(): string { return this.data.location; }

  /** Adds in-memory bytes. */
  async addBytes(dataType: number, dims: readonly number[], bytes: Uint8Array): Promise<Placement> {
    const h = keyHash(dataType, dims);
    h.update(bytes);
    const key = h.digest('hex');
    return this.reuse(key, bytes.byteLength) ?? this.record(key, await this.data.writeTensor(bytes));
  }

  /** Adds a byte range of another file, streamed (hashed in one pass, copied in a second if new). */
  async addFileRange(dataType: number, dims: readonly number[], file: string, offset: number, length: number): Promise<Placement> {
    const sourceKey = `${dataType}|${dims.join(',')}|${file}|${offset}|${length}`;
    const known = this.bySource.get(sourceKey);
    if (known) {
      this.countReuse(known);
      return known;
    }
    const h = keyHash(dataType, dims);
    await streamRange(file, offset, length, (chunk) => { h.update(chunk); }, { copy: false });
    const key = h.digest('hex');
    const placement = this.reuse(key, length) ?? this.record(key, await this.data.copyRange(file, offset, length));
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
    this.countReuse({ offset: p.offset, length });
    return p;
  }

  private record(key: string, p: Placement): Placement {
    this.byHash.set(key, p);
    this.stats.references += 1;
    this.stats.uniqueTensors += 1;
    this.stats.bytesWritten += p.length;
    this.stats.fileBytes = this.data.position;
    return p;
  }
}

function keyHash(dataType: number, dims: readonly number[]): Hash {
  return createHash('sha256').update(`${dataType}:${dims.join('x')}:`);
}
