import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { createDeflateRaw, crc32 } from 'node:zlib';
import { AtomicFileWriter } from '../common/atomic.js';
import { fsError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { BLOCK, encodeHeader, paddingFor } from './tar-format.js';

/** One file to put in the archive: its name inside the archive and where its bytes come from. */
export interface ArchiveEntry {
  name: string;
  source: { path: string } | { bytes: Uint8Array };
  size: number;
}

export interface ArchivedFile { name: string; size: number; sha256: string }

/**
 * gzip member header with every variable field fixed: no name, mtime 0, XFL 0 and OS 255
 * ("unknown"), so the bytes do not depend on the machine or the clock (Node's own gzip writes
 * the build's OS code).
 */
const GZIP_HEADER = Uint8Array.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);
const FILE_MODE = 0o644;
const DIR_MODE = 0o755;
/** Every entry gets this mtime (2000-01-01T00:00:00Z), so archives are reproducible. */
export const ARCHIVE_MTIME = 946684800;

/**
 * Streams a reproducible .tar.gz: a top-level directory then `entries` sorted by name, fixed
 * metadata, each file read once in 4 MiB chunks (hashed as it passes), never whole in memory.
 * Written atomically: on any error no file appears at `outPath`.
 */
export async function writeTarGz(opts: {
  outPath: string;
  topDir: string;
  entries: ArchiveEntry[];
  level: number;
  progress: Progress;
}): Promise<ArchivedFile[]> {
  const entries = [...opts.entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) throw new Error(`duplicate archive entry ${e.name}`);
    seen.add(e.name);
  }
  const totalBytes = entries.reduce((n, e) => n + e.size, 0);
  const writer = await AtomicFileWriter.create(opts.outPath);
  const deflate = createDeflateRaw({ level: opts.level, memLevel: 9 });
  let crc = 0;
  let rawLength = 0;
  const files: ArchivedFile[] = [];

  const push = async (chunk: Uint8Array): Promise<void> => {
    crc = crc32(chunk, crc);
    rawLength += chunk.byteLength;
    if (!deflate.write(chunk)) await once(deflate, 'drain');
  };

  const produce = async (): Promise<void> => {
    let done = 0;
    await push(encodeHeader({ name: opts.topDir, size: 0, mode: DIR_MODE, type: 'directory', mtime: ARCHIVE_MTIME }));
    for (const entry of entries) {
      await push(encodeHeader({ name: `${opts.topDir}/${entry.name}`, size: entry.size, mode: FILE_MODE, type: 'file', mtime: ARCHIVE_MTIME }));
      const hash = createHash('sha256');
      let seenBytes = 0;
      if ('bytes' in entry.source) {
        hash.update(entry.source.bytes);
        seenBytes = entry.source.bytes.byteLength;
        await push(entry.source.bytes);
      } else {
        try {
          for await (const chunk of createReadStream(entry.source.path, { highWaterMark: 1 << 22 })) {
            const c = chunk as Buffer;
            hash.update(c);
            seenBytes += c.byteLength;
            await push(c);
            opts.progress.update(`packing ${opts.topDir}`, done + seenBytes, totalBytes);
          }
        } catch (err) {
          throw fsError('cannot read', entry.source.path, err);
        }
      }
      if (seenBytes !== entry.size) throw fsError('cannot read', 'source' in entry && 'path' in entry.source ? entry.source.path : entry.name, new Error(`file changed size while packing (${entry.size} -> ${seenBytes} bytes)`));
      const pad = paddingFor(entry.size);
      if (pad) await push(new Uint8Array(pad));
      done += entry.size;
      files.push({ name: entry.name, size: entry.size, sha256: hash.digest('hex') });
    }
    await push(new Uint8Array(2 * BLOCK)); // end-of-archive marker
    deflate.end();
  };

  const consume = async (): Promise<void> => {
    await writer.write(GZIP_HEADER);
    for await (const chunk of deflate) await writer.write(chunk as Buffer);
  };

  try {
    await Promise.all([
      produce().catch((err) => { deflate.destroy(); throw err; }),
      consume(),
    ]);
    const trailer = new Uint8Array(8);
    const view = new DataView(trailer.buffer);
    view.setUint32(0, crc >>> 0, true);
    view.setUint32(4, rawLength % 2 ** 32, true);
    await writer.write(trailer);
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  } finally {
    opts.progress.finish();
  }
  return files;
}
