import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { UserError, fsError } from '../errors.js';

/**
 * The one reader of byte ranges of external-data files: `readRange` fills a buffer,
 * `streamRange` hands a long range to a sink in bounded chunks, `readRangeSync` serves the small
 * constants graph matching needs. A range past the end of its file is one UserError naming it.
 */

/** Chunk size of streamRange. */
const STREAM_CHUNK = 8 * 1024 * 1024;

async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
}

function endOfFile(file: string, at: number): UserError {
  return new UserError(`${file}: unexpected end of file at byte ${at}`);
}

/** Fills `into` from `file` at `offset`. */
export async function readRange(file: string, offset: number, into: Uint8Array): Promise<Uint8Array> {
  const fh = await openForRead(file);
  try {
    await readFully(fh, file, offset, into);
  } finally {
    await fh.close();
  }
  return into;
}

async function readFully(fh: FileHandle, file: string, offset: number, into: Uint8Array): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await fh.read(into, done, into.byteLength - done, offset + done);
    if (bytesRead === 0) throw endOfFile(file, offset + done);
    done += bytesRead;
  }
}

/**
 * Streams [offset, offset+length) of a file to `sink` in chunks of at most 8 MiB. With `copy`
 * each chunk is a fresh array the sink may keep (a write stream holds it until flushed);
 * without, the chunks share one buffer (enough for a hash).
 */
export async function streamRange(
  file: string, offset: number, length: number, sink: (chunk: Uint8Array) => unknown, opts: { copy: boolean },
): Promise<void> {
  const fh = await openForRead(file);
  try {
    const buf = new Uint8Array(Math.min(STREAM_CHUNK, Math.max(length, 1)));
    for (let done = 0; done < length;) {
      const chunk = buf.subarray(0, Math.min(buf.byteLength, length - done));
      await readFully(fh, file, offset + done, chunk);
      await sink(opts.copy ? chunk.slice() : chunk);
      done += chunk.byteLength;
    }
  } finally {
    await fh.close();
  }
}

/** Reads a byte range of a file synchronously (small constants during graph matching). */
export function readRangeSync(file: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  try {
    if (offset + length > fstatSync(fd).size) throw new UserError(`${file}: external data range ${offset}+${length} is past the end of the file`);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) throw endOfFile(file, offset + done);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}
