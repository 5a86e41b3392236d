import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { trackTemp } from './cleanup.js';
import { sweepDeadRunDebris } from './debris.js';
import { fsError } from './errors.js';

let tempCounter = 0;

/**
 * A temp path in the same directory as `target`, so the final rename never crosses devices:
 * `.<name>.tmp-<pid>-<n><random>`, the one pattern common/debris.ts recognises as this tool's.
 */
export function tempPathFor(target: string): string {
  tempCounter += 1;
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${tempCounter.toString(16)}${randomBytes(3).toString('hex')}`);
}

/** Creates `dir` (and parents) and removes dead runs' debris from it before this run writes there. */
export async function prepareDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw fsError('cannot create', dir, err);
  }
  sweepDeadRunDebris(dir);
}

/** fsync of a file by path. */
export async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try { await fh.sync(); } finally { await fh.close(); }
}

/** Writes a whole buffer/string to `target` atomically (temp file + fsync + rename). */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await prepareDir(dirname(target));
  const tmp = tempPathFor(target);
  const untrack = trackTemp(tmp);
  try {
    await writeFile(tmp, data);
    await syncFile(tmp);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw fsError('cannot write', target, err);
  } finally {
    untrack();
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
  private readonly untrack: () => void;

  private constructor(target: string) {
    this.target = target;
    this.tempPath = tempPathFor(target);
    this.untrack = trackTemp(this.tempPath);
    this.stream = createWriteStream(this.tempPath);
    this.stream.on('error', (err) => { this.failure = err; });
  }

  static async create(target: string): Promise<AtomicFileWriter> {
    await prepareDir(dirname(target));
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
    try {
      // A stream that already failed may be destroyed: end() would then never call back.
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve, reject) => {
        this.stream.end((err?: Error | null) => (err ? reject(err) : resolve()));
      });
      if (this.failure) throw this.failure;
      await syncFile(this.tempPath);
      await rename(this.tempPath, this.target);
    } catch (err) {
      await this.closeStream();
      await rm(this.tempPath, { force: true });
      throw fsError('cannot write', this.target, err);
    } finally {
      this.untrack();
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.closeStream();
    await rm(this.tempPath, { force: true });
    this.untrack();
  }

  /**
   * Destroys the stream and waits until its file descriptor is closed. A stream that failed
   * (disk full, EACCES) has usually closed already and emits no further 'close': waiting for
   * one would hang forever, which is how an I/O error once became a silent exit.
   */
  private async closeStream(): Promise<void> {
    if (this.stream.closed) return;
    await new Promise<void>((resolve) => {
      this.stream.once('close', () => resolve());
      this.stream.destroy();
    });
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
