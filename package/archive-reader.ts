import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { UserError, fsError } from '../common/errors.js';
import {
  BLOCK, decodeRawHeader, entryOf, longNameOf, META_TYPEFLAGS, paddingFor, parsePaxRecords,
  type RawTarHeader, type TarHeader,
} from './tar-format.js';

/** PAX / GNU long-name bodies are names and a few numbers: anything this big is not one. */
const MAX_META_BYTES = 1 << 20;

/** Receives one archive entry's bytes in order; return value of `end` is ignored. */
export interface EntrySink {
  data(chunk: Uint8Array): void | Promise<void>;
  end(): void | Promise<void>;
}

/**
 * Streams a .tar.gz and hands every entry to `onEntry` (which returns a sink for a file's
 * bytes, or null to skip them). Memory stays at one chunk; errors name the archive. Also returns
 * the sha256 of the archive file itself, hashed on the same single read. PAX (`x`, `g`) and GNU
 * long-name (`L`) entries are applied to the entries they describe and never reach `onEntry`;
 * links, devices and other non-file entries are refused by name.
 */
export async function readTarGz(
  path: string, onEntry: (h: TarHeader) => EntrySink | null | Promise<EntrySink | null>,
): Promise<{ headers: TarHeader[]; sha256: string }> {
  const archiveHash = createHash('sha256');
  const headers: TarHeader[] = [];
  let pending: Uint8Array = new Uint8Array(0);
  // A metadata entry's body is collected whole (bounded), then applies to the entries after it.
  type State =
    | { kind: 'header' }
    | { kind: 'body'; left: number; pad: number; sink: EntrySink | null }
    | { kind: 'meta'; typeflag: string; left: number; pad: number; parts: Uint8Array[] };
  let state = { kind: 'header' } as State;
  let ended = false;
  let lastName = '';
  const globalPax = new Map<string, string>();
  let nextPax: Map<string, string> | null = null;
  let nextLongName: string | null = null;

  const take = (n: number): Uint8Array | null => {
    if (pending.length < n) return null;
    const out = pending.subarray(0, n);
    pending = pending.subarray(n);
    return out;
  };

  const corrupt = (why: string): UserError => new UserError(`${path}: corrupt archive (${why})`);

  /** The entry a real header describes once pending PAX records and long names are applied. */
  const resolveEntry = (raw: RawTarHeader): TarHeader => {
    const pax = (key: string): string | undefined => nextPax?.get(key) ?? globalPax.get(key);
    const name = pax('path') ?? nextLongName ?? raw.name;
    const sizeText = pax('size');
    const mtimeText = pax('mtime');
    nextPax = null;
    nextLongName = null;
    if (sizeText !== undefined && !/^[0-9]+$/.test(sizeText)) throw corrupt(`bad PAX size "${sizeText}" for ${name}`);
    if (mtimeText !== undefined && !/^-?[0-9]+(\.[0-9]*)?$/.test(mtimeText)) throw corrupt(`bad PAX mtime "${mtimeText}" for ${name}`);
    return entryOf({
      ...raw, name,
      size: sizeText !== undefined ? Number(sizeText) : raw.size,
      mtime: mtimeText !== undefined ? Math.floor(Number(mtimeText)) : raw.mtime,
    });
  };

  const endMeta = (typeflag: string, body: Uint8Array): void => {
    if (typeflag === 'x' || typeflag === 'g') {
      let records: Map<string, string>;
      try { records = parsePaxRecords(body); } catch (err) { throw corrupt(`${(err as Error).message} after ${lastName || 'the start'}`); }
      if (typeflag === 'g') for (const [k, v] of records) globalPax.set(k, v);
      else nextPax = records;
    } else if (typeflag === 'L') {
      nextLongName = longNameOf(body);
    } // 'K' (long link name) names a link target: links are refused when their header comes.
  };

  const process = async (): Promise<void> => {
    for (;;) {
      if (ended) { pending = new Uint8Array(0); return; }
      if (state.kind === 'header') {
        const block = take(BLOCK);
        if (!block) return;
        let raw: RawTarHeader | null;
        try { raw = decodeRawHeader(block); } catch (err) { throw corrupt((err as Error).message); }
        if (!raw) { ended = true; continue; }
        if (META_TYPEFLAGS[raw.typeflag]) {
          if (raw.size > MAX_META_BYTES) throw corrupt(`${META_TYPEFLAGS[raw.typeflag]} of ${raw.size} bytes`);
          state = { kind: 'meta', typeflag: raw.typeflag, left: raw.size, pad: paddingFor(raw.size), parts: [] };
          if (raw.size === 0) { endMeta(raw.typeflag, new Uint8Array(0)); }
          continue;
        }
        let header: TarHeader;
        try { header = resolveEntry(raw); } catch (err) { throw err instanceof UserError ? err : corrupt((err as Error).message); }
        headers.push(header);
        lastName = header.name;
        const sink = header.type === 'file' ? await onEntry(header) : (await onEntry(header), null);
        state = { kind: 'body', left: header.type === 'file' ? header.size : 0, pad: header.type === 'file' ? paddingFor(header.size) : 0, sink };
        if (state.left === 0 && state.sink) await state.sink.end();
      } else if (state.kind === 'meta') {
        if (state.left > 0) {
          if (pending.length === 0) return;
          const chunk = take(Math.min(state.left, pending.length))!;
          state.parts.push(Uint8Array.from(chunk));
          state.left -= chunk.length;
          if (state.left === 0) endMeta(state.typeflag, concatAll(state.parts));
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
    // pipe() does not forward the source's errors: a missing file would be an unhandled 'error'.
    raw.on('error', (err) => gunzip.destroy(err));
    for await (const chunk of gunzip) {
      const c = chunk as Buffer;
      pending = pending.length ? concat(pending, c) : new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
      await process();
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') throw fsError('cannot read', path, err);
    throw corrupt((err as Error).message);
  }
  const last = state as State;
  if (last.kind !== 'header' && (last.left > 0 || last.pad > 0)) throw corrupt(`truncated inside ${last.kind === 'meta' ? `a ${META_TYPEFLAGS[last.typeflag]}` : headers[headers.length - 1]?.name}`);
  if (!ended) throw corrupt('no end-of-archive marker');
  return { headers, sha256: archiveHash.digest('hex') };
}

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
