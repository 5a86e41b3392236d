/**
 * POSIX ustar headers, written and parsed. Only what model archives need: regular files and
 * directories, names split into prefix/name when longer than 100 bytes, and GNU base-256 sizes
 * for files of 8 GiB or more (a 1.7B float decoder_weights.data comes close).
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
  return text === '' ? 0 : parseInt(text, 8);
}

/** Parses a header block; returns null for the all-zero end-of-archive block. Throws on a bad checksum. */
export function decodeHeader(buf: Uint8Array): TarHeader | null {
  if (buf.every((b) => b === 0)) return null;
  const stored = readNumber(buf, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i += 1) sum += i >= 148 && i < 156 ? 0x20 : buf[i];
  if (sum !== stored) throw new Error('tar header checksum mismatch');
  const typeflag = buf[156];
  const base = readString(buf, 0, 100);
  const prefix = readString(buf, 345, 155);
  const name = prefix ? `${prefix}/${base}` : base;
  const type = typeflag === 0x35 ? 'directory' : typeflag === 0x30 || typeflag === 0 ? 'file' : null;
  if (!type) throw new Error(`unsupported tar entry type '${String.fromCharCode(typeflag)}' for ${name}`);
  return {
    name: type === 'directory' ? name.replace(/\/$/, '') : name,
    size: readNumber(buf, 124, 12),
    mode: readNumber(buf, 100, 8),
    type,
    mtime: readNumber(buf, 136, 12),
  };
}

export function paddingFor(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}
