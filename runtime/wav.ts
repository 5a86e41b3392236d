import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { UserError, fsError } from '../common/errors.js';
import { SampleBuffer } from './sample-buffer.js';

/** Decoded audio: interleaved channels already mixed down to one. */
export interface MonoAudio {
  samples: Float32Array;
  sampleRate: number;
  /** Channels in the file before the mix-down. */
  channels: number;
}

/** The fmt chunk, reduced to what decoding needs. */
export interface WavFormat {
  /** 'int' for PCM (unsigned 8-bit, signed 16/24/32-bit), 'float' for IEEE float 32/64-bit. */
  kind: 'int' | 'float';
  channels: number;
  sampleRate: number;
  /** Bytes per sample of one channel (the container size, not the valid bits). */
  bytesPerSample: number;
}

/** Sample rates the reader accepts: telephone-grade 1 kHz up to studio 384 kHz. */
export const MIN_SAMPLE_RATE = 1000;
export const MAX_SAMPLE_RATE = 384000;
/**
 * Longest audio one file may hold. Transcription memory grows linearly with duration (the
 * 16 kHz samples, 64 kB per second, plus one segment at a time), so this bounds it: 3 hours
 * = 173 M samples, 0.7 GB.
 */
export const MAX_AUDIO_SECONDS = 3 * 3600;

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
/** Tail shared by every KSDATAFORMAT_SUBTYPE_* GUID; the first two bytes hold the format code. */
const SUBTYPE_GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
/** Streaming writers leave this in size fields they never patched. */
const UNKNOWN_SIZE = 0xffffffff;
/** A fmt chunk is 16-40 bytes; anything far larger is not one worth reading into memory. */
const MAX_FMT_BYTES = 4096;
/** Bytes of sample data decoded per read (rounded down to whole frames). */
const READ_BLOCK_BYTES = 1 << 20;

/**
 * Sequential bytes from a buffer or a file descriptor. `remaining` is known for buffers and
 * regular files (so sizes are checked before anything is read) and undefined for pipes and
 * devices (read until they end, within the bounds above).
 */
interface ByteSource {
  readonly remaining: number | undefined;
  /** Up to n bytes; fewer only at the end. */
  read(n: number): Uint8Array;
  skip(n: number): number;
}

class BufferSource implements ByteSource {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}
  get remaining(): number { return this.bytes.byteLength - this.at; }
  read(n: number): Uint8Array {
    const out = this.bytes.subarray(this.at, Math.min(this.bytes.byteLength, this.at + n));
    this.at += out.byteLength;
    return out;
  }
  skip(n: number): number { return this.read(n).byteLength; }
}

class FileSource implements ByteSource {
  private at = 0;
  constructor(private readonly fd: number, private readonly file: string, private readonly size: number | undefined) {}
  get remaining(): number | undefined { return this.size === undefined ? undefined : this.size - this.at; }
  read(n: number): Uint8Array {
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      let k: number;
      try {
        k = readSync(this.fd, out, got, n - got, this.size === undefined ? null : this.at);
      } catch (err) {
        throw fsError('cannot read audio', this.file, err);
      }
      if (k === 0) break;
      got += k;
      this.at += k;
    }
    return out.subarray(0, got);
  }
  skip(n: number): number {
    if (this.size !== undefined) {
      const k = Math.min(n, this.size - this.at);
      this.at += k;
      return k;
    }
    let skipped = 0;
    while (skipped < n) {
      const k = this.read(Math.min(READ_BLOCK_BYTES, n - skipped)).byteLength;
      if (k === 0) break;
      skipped += k;
    }
    return skipped;
  }
}

/** What a sink receives while the data chunk is decoded. */
export interface WavSink {
  /** Called once, after the header is read and checked, before any sample is decoded. */
  begin(format: WavFormat, frames: number | undefined): void;
  /** Mono samples in file order (the block is reused: copy what you keep). */
  samples(block: Float32Array): void;
}

/**
 * Reads a WAV file and mixes it down to mono float samples in [-1, 1]. The header is read and
 * checked from the first bytes (a non-WAV file, however large, costs 12 bytes), the data is
 * decoded in 1 MiB blocks, and pipes or devices are read sequentially within the same bounds.
 */
export async function readWav(file: string): Promise<MonoAudio> {
  const collected = collectingSink();
  streamWav(file, collected.sink);
  return collected.result();
}

/** Decodes a WAV file block by block into `sink` (see readWav). */
export function streamWav(file: string, sink: WavSink): void {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw fsError('cannot read audio', file, err);
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new UserError(`cannot read audio ${file}: is a directory`);
    decodeFrom(new FileSource(fd, file, stat.isFile() ? stat.size : undefined), file, sink);
  } finally {
    closeSync(fd);
  }
}

/**
 * Parses a RIFF/WAVE byte buffer. Chunks other than fmt and data (LIST, fact, JUNK, ...)
 * are skipped, honouring the pad byte after odd-sized chunks. `file` only names the
 * source in error messages.
 */
export function decodeWav(bytes: Uint8Array, file: string): MonoAudio {
  const collected = collectingSink();
  decodeFrom(new BufferSource(bytes), file, collected.sink);
  return collected.result();
}

function collectingSink(): { sink: WavSink; result: () => MonoAudio } {
  let format: WavFormat | undefined;
  let out = new SampleBuffer();
  const sink: WavSink = {
    begin(f, frames) { format = f; out = new SampleBuffer(frames ?? 0); },
    samples(block) { out.append(block); },
  };
  return {
    sink,
    result: () => {
      const f = format as WavFormat;
      return { samples: out.result(), sampleRate: f.sampleRate, channels: f.channels };
    },
  };
}

function decodeFrom(src: ByteSource, file: string, sink: WavSink): void {
  const fail = (why: string): UserError => new UserError(`${file}: ${why}`);
  const head = src.read(12);
  const tag = (b: Uint8Array, at: number): string => String.fromCharCode(b[at], b[at + 1], b[at + 2], b[at + 3]);
  if (head.byteLength < 12 || tag(head, 0) !== 'RIFF' || tag(head, 8) !== 'WAVE') {
    throw fail('not a WAV file (expected a RIFF/WAVE header; only WAV audio is supported)');
  }

  let format: WavFormat | undefined;
  for (;;) {
    const header = src.read(8);
    if (header.byteLength < 8) break;
    const id = tag(header, 0);
    const declared = new DataView(header.buffer, header.byteOffset, 8).getUint32(4, true);
    const remaining = src.remaining;
    if (id === 'data') {
      if (!format) throw fail('data chunk comes before the fmt chunk');
      // An unpatched streaming header means "until the end of the file".
      const size = declared === UNKNOWN_SIZE ? remaining : declared;
      if (size !== undefined && remaining !== undefined && size > remaining) {
        throw fail(`truncated: data chunk declares ${size} bytes but only ${remaining} remain`);
      }
      decodeData(src, format, size, fail, sink);
      return;
    }
    if (remaining !== undefined && declared > remaining) {
      throw fail(`truncated: ${JSON.stringify(id)} chunk declares ${declared} bytes but only ${remaining} remain`);
    }
    if (id === 'fmt ') {
      if (declared > MAX_FMT_BYTES) throw fail(`fmt chunk of ${declared} bytes (a fmt chunk is at most ${MAX_FMT_BYTES})`);
      const body = src.read(declared);
      if (body.byteLength < declared) throw fail(`truncated: "fmt " chunk declares ${declared} bytes but only ${body.byteLength} remain`);
      format = parseFormat(new DataView(body.buffer, body.byteOffset, body.byteLength), declared, fail);
      if (declared & 1) src.skip(1);
    } else {
      const want = declared + (declared & 1);
      const skipped = src.skip(want);
      if (skipped < declared) throw fail(`truncated: ${JSON.stringify(id)} chunk declares ${declared} bytes but only ${skipped} remain`);
    }
  }
  if (!format) throw fail('no fmt chunk');
  throw fail('no data chunk');
}

/** Frames -> a duration for messages (`1 h 02 min`, `12.5 s`). */
function describeSeconds(s: number): string {
  if (s < 120) return `${s.toFixed(1)} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min`;
}

function decodeData(src: ByteSource, fmt: WavFormat, size: number | undefined, fail: (why: string) => UserError, sink: WavSink): void {
  const frameBytes = fmt.bytesPerSample * fmt.channels;
  const maxFrames = MAX_AUDIO_SECONDS * fmt.sampleRate;
  const tooLong = (frames: number, atLeast: boolean): UserError => fail(
    `audio is ${atLeast ? 'over ' : ''}${describeSeconds(frames / fmt.sampleRate)} long; the limit is ${describeSeconds(MAX_AUDIO_SECONDS)} per file (split it first)`);
  const frames = size === undefined ? undefined : Math.floor(size / frameBytes);
  if (frames !== undefined && frames > maxFrames) throw tooLong(frames, false);
  sink.begin(fmt, frames);

  const blockFrames = Math.max(1, Math.floor(READ_BLOCK_BYTES / frameBytes));
  const mono = new Float32Array(blockFrames);
  let done = 0;
  let carry = new Uint8Array(0);
  for (;;) {
    const wantFrames = frames === undefined ? blockFrames : Math.min(blockFrames, frames - done);
    if (wantFrames <= 0) break;
    const chunk = src.read(wantFrames * frameBytes - carry.byteLength);
    const bytes = carry.byteLength ? concat(carry, chunk) : chunk;
    const whole = Math.floor(bytes.byteLength / frameBytes);
    if (whole > 0) {
      if (done + whole > maxFrames) throw tooLong(done + whole, true);
      mixDown(bytes, whole, fmt, mono);
      sink.samples(mono.subarray(0, whole));
      done += whole;
    }
    // A partial frame only survives to the next read of a pipe; at the end it is dropped.
    carry = bytes.slice(whole * frameBytes);
    if (chunk.byteLength === 0) break;
  }
  if (frames !== undefined && done < frames) throw fail(`truncated: data chunk declares ${size} bytes but only ${done * frameBytes} remain`);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

function parseFormat(view: DataView, size: number, fail: (why: string) => UserError): WavFormat {
  if (size < 16) throw fail(`fmt chunk too short (${size} bytes)`);
  let code = view.getUint16(0, true);
  const channels = view.getUint16(2, true);
  const sampleRate = view.getUint32(4, true);
  const blockAlign = view.getUint16(12, true);
  const bits = view.getUint16(14, true);
  if (code === WAVE_FORMAT_EXTENSIBLE) {
    if (size < 40) throw fail(`WAVE_FORMAT_EXTENSIBLE fmt chunk too short (${size} bytes)`);
    const guid = 24;
    code = view.getUint16(guid, true);
    const tailOk = SUBTYPE_GUID_TAIL.every((b, i) => view.getUint8(guid + 2 + i) === b);
    if (!tailOk) throw fail('unsupported WAVE_FORMAT_EXTENSIBLE sub-format (not PCM or IEEE float)');
  }
  if (channels === 0) throw fail('zero channels');
  if (sampleRate === 0) throw fail('sample rate 0');
  if (sampleRate < MIN_SAMPLE_RATE || sampleRate > MAX_SAMPLE_RATE) {
    throw fail(`sample rate ${sampleRate} Hz is outside the supported ${MIN_SAMPLE_RATE}-${MAX_SAMPLE_RATE} Hz`);
  }
  let kind: WavFormat['kind'];
  if (code === WAVE_FORMAT_PCM && (bits === 8 || bits === 16 || bits === 24 || bits === 32)) kind = 'int';
  else if (code === WAVE_FORMAT_IEEE_FLOAT && (bits === 32 || bits === 64)) kind = 'float';
  else if (code === WAVE_FORMAT_PCM || code === WAVE_FORMAT_IEEE_FLOAT) {
    throw fail(`unsupported bit depth ${bits} for ${code === WAVE_FORMAT_PCM ? 'PCM' : 'float'} audio (supported: PCM 8/16/24/32, float 32/64)`);
  } else {
    throw fail(`unsupported WAV format code 0x${code.toString(16).padStart(4, '0')} (supported: PCM, IEEE float)`);
  }
  const bytesPerSample = bits / 8;
  if (blockAlign !== bytesPerSample * channels) {
    throw fail(`inconsistent fmt chunk: block align ${blockAlign} != ${channels} channels x ${bytesPerSample} bytes`);
  }
  return { kind, channels, sampleRate, bytesPerSample };
}

/** Decodes interleaved frames and averages the channels (np.mean over channels, as the official loader). */
function mixDown(data: Uint8Array, frames: number, fmt: WavFormat, out: Float32Array): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const read = sampleReader(view, fmt);
  const step = fmt.bytesPerSample;
  let at = 0;
  for (let f = 0; f < frames; f += 1) {
    let sum = 0;
    for (let c = 0; c < fmt.channels; c += 1, at += step) sum += read(at);
    out[f] = sum / fmt.channels;
  }
}

/** Returns a reader of one sample at a byte offset, scaled to [-1, 1) like soundfile/librosa. */
function sampleReader(view: DataView, fmt: WavFormat): (at: number) => number {
  if (fmt.kind === 'float') {
    return fmt.bytesPerSample === 4 ? (at) => view.getFloat32(at, true) : (at) => view.getFloat64(at, true);
  }
  switch (fmt.bytesPerSample) {
    case 1: return (at) => (view.getUint8(at) - 128) / 128;
    case 2: return (at) => view.getInt16(at, true) / 32768;
    case 3: return (at) => {
      const v = view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16);
      return v / 8388608;
    };
    default: return (at) => view.getInt32(at, true) / 2147483648;
  }
}
