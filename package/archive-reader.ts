import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { UserError, fsError } from '../common/errors.js';
import { BLOCK, decodeHeader, paddingFor, type TarHeader } from './tar-format.js';

/** Receives one archive entry's bytes in order; return value of `end` is ignored. */
export interface EntrySink {
  data(chunk: Uint8Array): void | Promise<void>;
  end(): void | Promise<void>;
}

/**
 * Streams a .tar.gz and hands every entry to `onEntry` (which returns a sink for a file's
 * bytes, or null to skip them). Memory stays at one chunk; errors name the archive. Also returns
 * the sha256 of the archive file itself, hashed on the same single read.
 */
export async function readTarGz(
  path: string, onEntry: (h: TarHeader) => EntrySink | null | Promise<EntrySink | null>,
): Promise<{ headers: TarHeader[]; sha256: string }> {
  const archiveHash = createHash('sha256');
  const headers: TarHeader[] = [];
  let pending: Uint8Array = new Uint8Array(0);
  type State = { kind: 'header' } | { kind: 'body'; left: number; pad: number; sink: EntrySink | null };
  let state = { kind: 'header' } as State;
  let ended = false;

  const take = (n: number): Uint8Array | null => {
    if (pending.length < n) return null;
    const out = pending.subarray(0, n);
    pending = pending.subarray(n);
    return out;
  };

  const process = async (): Promise<void> => {
    for (;;) {
      if (ended) { pending = new Uint8Array(0); return; }
      if (state.kind === 'header') {
        const block = take(BLOCK);
        if (!block) return;
        let header: TarHeader | null;
        try { header = decodeHeader(block); } catch (err) { throw new UserError(`${path}: corrupt archive (${(err as Error).message})`); }
        if (!header) { ended = true; continue; }
        headers.push(header);
        const sink = header.type === 'file' ? await onEntry(header) : (await onEntry(header), null);
        state = { kind: 'body', left: header.type === 'file' ? header.size : 0, pad: header.type === 'file' ? paddingFor(header.size) : 0, sink };
        if (state.left === 0 && state.sink) await state.sink.end();
      } else {
        if (state.left > 0) {
          if (pending.length === 0) return;
          const n = Math.min(state.left, pending.length);
          const chunk = take(n)!;
          state.left -= n;
          if (state.sink) await state.sink.data(chunk);
          if (state.left === 0 && state.sink) await state.sink.end();
          continue;
        }
        if (state.pad > 0) {
          const n = Math.min(state.pad, pending.length);
          if (n === 0) return;
          take(n);
          state.pad -= n;
          continue;
        }
        state = { kind: 'header' };
      }
    }
  };

  try {
    const raw = createReadStream(path, { highWaterMark: 1 << 22 });
    raw.on('data', (c) => archiveHash.update(c as Buffer));
    // 1 MiB output chunks: the default 16 KiB makes the per-chunk JS work the bottleneck.
    const gunzip = raw.pipe(createGunzip({ chunkSize: 1 << 20 }));
    for await (const chunk of gunzip) {
      const c = chunk as Buffer;
      pending = pending.length ? concat(pending, c) : new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
      await process();
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') throw fsError('cannot read', path, err);
    throw new UserError(`${path}: corrupt archive (${(err as Error).message})`);
  }
  const last = state as State;
  if (last.kind === 'body' && (last.left > 0 || last.pad > 0)) throw new UserError(`${path}: corrupt archive (truncated inside ${headers[headers.length - 1]?.name})`);
  if (!ended) throw new UserError(`${path}: corrupt archive (no end-of-archive marker)`);
  return { headers, sha256: archiveHash.digest('hex') };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
