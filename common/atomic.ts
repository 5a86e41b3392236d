import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { fsError } from './errors.js';

let tempCounter = 0;

/** A temp path in the same directory as `target`, so the final rename never crosses devices. */
export function tempPathFor(target: string): string {
  tempCounter += 1;
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${tempCounter}`);
}

/** Writes a whole buffer/string to `target` atomically (temp file + fsync + rename). */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
    await writeFile(tmp, data);
    const fh = await open(tmp, 'r+');
    try { await fh.sync(); } finally { await fh.close(); }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw fsError('cannot write', target, err);
  }
}

/**
 * A file written piece by piece that only appears under its final name on `commit()`.
 * `abort()` (or any failed write) removes the temp file. Writes are sequential and
 * respect back-pressure, so memory stays bounded by one chunk.
 */
export class AtomicFileWriter {
  readonly target: string;
  readonly tempPath: string;
  private stream: WriteStream;
  private failure: Error | undefined;
  private bytes = 0;
  private done = false;

  private constructor(target: string) {
    this.target = target;
    this.tempPath = tempPathFor(target);
    this.stream = createWriteStream(this.tempPath);
    this.stream.on('error', (err) => { this.failure = err; });
  }

  static async create(target: string): Promise<AtomicFileWriter> {
    await mkdir(dirname(target), { recursive: true });
    return new AtomicFileWriter(target);
  }

  /** Bytes written so far (the offset the next write lands at). */
  get position(): number { return this.bytes; }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw fsError('cannot write', this.target, this.failure);
    if (chunk.byteLength === 0) return;
    this.bytes += chunk.byteLength;
    const ok = this.stream.write(chunk);
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { this.stream.off('error', onErr); resolve(); };
        const onErr = (err: Error): void => { this.stream.off('drain', onDrain); reject(fsError('cannot write', this.target, err)); };
        this.stream.once('drain', onDrain);
        this.stream.once('error', onErr);
      });
    }
  }

  /**
   * Resolves once every chunk written so far has been handed to the OS, so callers may reuse
   * the buffers they passed to write(). (An empty write queues behind all earlier ones.)
   */
  async flushed(): Promise<void> {
    if (this.failure) throw fsError('cannot write', this.target, this.failure);
    if (this.stream.writableLength === 0) return;
    await new Promise<void>((resolve, reject) => {
      this.stream.write(new Uint8Array(0), (err) => (err ? reject(fsError('cannot write', this.target, err)) : resolve()));
    });
  }

  /** Pads with zero bytes so the next write starts at a multiple of `alignment`. */
  async align(alignment: number): Promise<void> {
    const rem = this.bytes % alignment;
    if (rem !== 0) await this.write(new Uint8Array(alignment - rem));
  }

  async commit(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await new Promise<void>((resolve, reject) => {
      this.stream.end((err?: Error | null) => (err ? reject(err) : resolve()));
    }).catch(async (err) => { await rm(this.tempPath, { force: true }); throw fsError('cannot write', this.target, err); });
    if (this.failure) { await rm(this.tempPath, { force: true }); throw fsError('cannot write', this.target, this.failure); }
    try {
      const fh = await open(this.tempPath, 'r+');
      try { await fh.sync(); } finally { await fh.close(); }
      await rename(this.tempPath, this.target);
    } catch (err) {
      await rm(this.tempPath, { force: true });
      throw fsError('cannot write', this.target, err);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await new Promise<void>((resolve) => { this.stream.destroy(); this.stream.once('close', () => resolve()); });
    await rm(this.tempPath, { force: true });
  }
}

/**
 * Runs `fn` with a set of writers and commits them all only if it succeeds; on any error
 * every temp file is removed, so a failed run leaves no half-written output.
 */
export async function withAtomicWriters<T>(
  fn: (open: (target: string) => Promise<AtomicFileWriter>) => Promise<T>,
): Promise<T> {
  const writers: AtomicFileWriter[] = [];
  const openWriter = async (target: string): Promise<AtomicFileWriter> => {
    const w = await AtomicFileWriter.create(target);
    writers.push(w);
    return w;
  };
  try {
    const result = await fn(openWriter);
    for (const w of writers) await w.commit();
    return result;
  } catch (err) {
    for (const w of writers) await w.abort();
    throw err;
  }
}
