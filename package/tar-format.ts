/**
 * POSIX ustar headers, written and parsed. The writer emits only what model archives need:
 * regular files and directories, names split into prefix/name when longer than 100 bytes, and
 * GNU base-256 sizes for files of 8 GiB or more (a 1.7B float decoder_weights.data comes close).
 * The reader also takes what other tars write for the same content: PAX extended and global
 * headers (GNU tar `--format=pax`, bsdtar, git archive), GNU long names and v7 headers.
 */
export const BLOCK = 512;

export interface TarHeader {
  name: string;
  size: number;
  mode: number;
  type: 'file' | 'directory';
  /** Seconds since the epoch; fixed by the writer so archives are reproducible. */
  mtime: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function writeString(buf: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > length) throw new Error(`tar field too long: ${value}`);
  buf.set(bytes, offset);
}

function writeOctal(buf: Uint8Array, offset: number, length: number, value: number): void {
  // length-1 octal digits then NUL, zero-padded (the form GNU tar and bsdtar write).
  writeString(buf, offset, length, value.toString(8).padStart(length - 1, '0') + '\0');
}

function writeSize(buf: Uint8Array, offset: number, value: number): void {
  if (value < 0o77777777777) { writeOctal(buf, offset, 12, value); return; }
  // GNU base-256: first byte 0x80, big-endian binary in the remaining 11 bytes.
  buf[offset] = 0x80;
  let v = BigInt(value);
  for (let i = 11; i >= 1; i -= 1) { buf[offset + i] = Number(v & 0xffn); v >>= 8n; }
}

function splitName(name: string): { prefix: string; base: string } {
  if (encoder.encode(name).length <= 100) return { prefix: '', base: name };
  for (let i = name.length - 1; i > 0; i -= 1) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const base = name.slice(i + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(base).length <= 100) return { prefix, base };
  }
  throw new Error(`path too long for a ustar archive: ${name}`);
}

export function encodeHeader(h: TarHeader): Uint8Array {
  const buf = new Uint8Array(BLOCK);
  const { prefix, base } = splitName(h.type === 'directory' && !h.name.endsWith('/') ? `${h.name}/` : h.name);
  writeString(buf, 0, 100, base);
  writeOctal(buf, 100, 8, h.mode);
  writeOctal(buf, 108, 8, 0); // uid
  writeOctal(buf, 116, 8, 0); // gid
  writeSize(buf, 124, h.type === 'file' ? h.size : 0);
  writeOctal(buf, 136, 12, h.mtime);
  buf.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  buf[156] = h.type === 'file' ? 0x30 : 0x35;
  writeString(buf, 257, 6, 'ustar\0');
  writeString(buf, 263, 2, '00');
  // uname/gname left empty: nothing about the building machine leaks into the archive.
  writeString(buf, 345, 155, prefix);
  let sum = 0;
  for (const b of buf) sum += b;
  writeString(buf, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return buf;
}

function readString(buf: Uint8Array, offset: number, length: number): string {
  let end = offset;
  while (end < offset + length && buf[end] !== 0) end += 1;
  return decoder.decode(buf.subarray(offset, end));
}

function readNumber(buf: Uint8Array, offset: number, length: number): number {
  if (buf[offset] & 0x80) {
    let v = 0n;
    for (let i = 1; i < length; i += 1) v = (v << 8n) | BigInt(buf[offset + i]);
    return Number(v);
  }
  const text = readString(buf, offset, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new Error(`bad octal number "${text}" in a tar header`);
  return parseInt(text, 8);
}

/**
 * One header block as stored, before PAX or GNU long-name records are applied: the raw type
 * flag is kept so the reader can tell metadata entries (`x`, `g`, `L`, `K`) from real ones.
 */
export interface RawTarHeader {
  name: string;
  size: number;
  mode: number;
  mtime: number;
  typeflag: string;
}

/**
 * Parses a header block; returns null for the all-zero end-of-archive block. Throws on a bad
 * checksum. Reads POSIX ustar (name split into prefix + name), GNU (`ustar  ` magic, no prefix
 * field) and pre-POSIX v7 headers; the checksum may be the unsigned sum (POSIX) or the signed
 * one some old tars wrote.
 */
export function decodeRawHeader(buf: Uint8Array): RawTarHeader | null {
  if (buf.every((b) => b === 0)) return null;
  const stored = readNumber(buf, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i += 1) {
    const b = i >= 148 && i < 156 ? 0x20 : buf[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) throw new Error('tar header checksum mismatch');
  const magic = readString(buf, 257, 6);
  const version = decoder.decode(buf.subarray(263, 265));
  const posix = magic === 'ustar' && version === '00';
  const base = readString(buf, 0, 100);
  const prefix = posix ? readString(buf, 345, 155) : '';
  return {
    name: prefix ? `${prefix}/${base}` : base,
    size: readNumber(buf, 124, 12),
    mode: readNumber(buf, 100, 8),
    mtime: readNumber(buf, 136, 12),
    typeflag: buf[156] === 0 ? '0' : String.fromCharCode(buf[156]),
  };
}

/** Type flags of entries that describe the next entry (or all later ones) rather than being one. */
export const META_TYPEFLAGS: Record<string, string> = {
  x: 'PAX extended header', g: 'PAX global header', L: 'GNU long name', K: 'GNU long link name',
};

const ENTRY_TYPES: Record<string, TarHeader['type']> = { 0: 'file', 7: 'file', 5: 'directory' };
const TYPE_NAMES: Record<string, string> = {
  1: 'hard link', 2: 'symbolic link', 3: 'character device', 4: 'block device', 6: 'FIFO',
  S: 'GNU sparse file', V: 'GNU volume header', M: 'GNU multi-volume continuation', D: 'GNU dump directory',
};

/** The entry a raw header stands for, or throws naming the unsupported kind (links, devices, ...). */
export function entryOf(raw: RawTarHeader): TarHeader {
  const type = ENTRY_TYPES[raw.typeflag];
  if (!type) {
    const kind = TYPE_NAMES[raw.typeflag] ?? `type '${raw.typeflag}'`;
    throw new Error(`unsupported tar entry ${raw.name} (${kind}; model archives hold only files and folders)`);
  }
  return { name: type === 'directory' ? raw.name.replace(/\/+$/, '') : raw.name, size: type === 'file' ? raw.size : 0, mode: raw.mode, type, mtime: raw.mtime };
}

/** Parses a header block as a plain (non-metadata) entry; null for the end-of-archive block. */
export function decodeHeader(buf: Uint8Array): TarHeader | null {
  const raw = decodeRawHeader(buf);
  return raw && entryOf(raw);
}

/**
 * Parses a PAX extended header body: records `<length> <key>=<value>\n`, where length counts
 * the whole record in bytes (POSIX.1-2001 pax). Values are UTF-8.
 */
export function parsePaxRecords(body: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    if (body[at] === 0) break; // some writers pad the body with NULs
    let space = at;
    while (space < body.length && body[space] !== 0x20) space += 1;
    const lengthText = decoder.decode(body.subarray(at, space));
    const length = Number(lengthText);
    if (!/^[0-9]+$/.test(lengthText) || length <= space - at + 1 || at + length > body.length || body[at + length - 1] !== 0x0a) {
      throw new Error('malformed PAX extended header record');
    }
    const record = decoder.decode(body.subarray(space + 1, at + length - 1));
    const eq = record.indexOf('=');
    if (eq <= 0) throw new Error('malformed PAX extended header record');
    out.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return out;
}

/** A NUL-terminated name from a GNU long-name body. */
export function longNameOf(body: Uint8Array): string {
  let end = 0;
  while (end < body.length && body[end] !== 0) end += 1;
  return decoder.decode(body.subarray(0, end));
}

export function paddingFor(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}
