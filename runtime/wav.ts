import { readFile } from 'node:fs/promises';
import { UserError, fsError } from '../common/errors.js';

/** Decoded audio: interleaved channels already mixed down to one. */
export interface MonoAudio {
  samples: Float32Array;
  sampleRate: number;
  /** Channels in the file before the mix-down. */
  channels: number;
}

/** The fmt chunk, reduced to what decoding needs. */
interface WavFormat {
  /** 'int' for PCM (unsigned 8-bit, signed 16/24/32-bit), 'float' for IEEE float 32/64-bit. */
  kind: 'int' | 'float';
  channels: number;
  sampleRate: number;
  /** Bytes per sample of one channel (the container size, not the valid bits). */
  bytesPerSample: number;
}

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
/** Tail shared by every KSDATAFORMAT_SUBTYPE_* GUID; the first two bytes hold the format code. */
const SUBTYPE_GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
/** Streaming writers leave this in size fields they never patched. */
const UNKNOWN_SIZE = 0xffffffff;

/** Reads a WAV file and mixes it down to mono float samples in [-1, 1]. */
export async function readWav(file: string): Promise<MonoAudio> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw fsError('cannot read audio', file, err);
  }
  return decodeWav(bytes, file);
}

/**
 * Parses a RIFF/WAVE byte buffer. Chunks other than fmt and data (LIST, fact, JUNK, ...)
 * are skipped, honouring the pad byte after odd-sized chunks. `file` only names the
 * source in error messages.
 */
export function decodeWav(bytes: Uint8Array, file: string): MonoAudio {
  const fail = (why: string): UserError => new UserError(`${file}: ${why}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number): string => String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);

  if (bytes.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') {
    throw fail('not a WAV file (expected a RIFF/WAVE header; only WAV audio is supported)');
  }

  let format: WavFormat | undefined;
  let data: Uint8Array | undefined;
  let at = 12;
  while (at + 8 <= bytes.byteLength) {
    const id = tag(at);
    const declared = view.getUint32(at + 4, true);
    const bodyStart = at + 8;
    const remaining = bytes.byteLength - bodyStart;
    if (id === 'data') {
      if (!format) throw fail('data chunk comes before the fmt chunk');
      // An unpatched streaming header means "until the end of the file".
      const size = declared === UNKNOWN_SIZE ? remaining : declared;
      if (size > remaining) throw fail(`truncated: data chunk declares ${size} bytes but only ${remaining} remain`);
      data = bytes.subarray(bodyStart, bodyStart + size);
      break;
    }
    if (declared > remaining) throw fail(`truncated: ${JSON.stringify(id)} chunk declares ${declared} bytes but only ${remaining} remain`);
    if (id === 'fmt ') format = parseFormat(view, bodyStart, declared, fail);
    at = bodyStart + declared + (declared & 1);
  }
  if (!format) throw fail('no fmt chunk');
  if (!data) throw fail('no data chunk');

  const frameBytes = format.bytesPerSample * format.channels;
  const frames = Math.floor(data.byteLength / frameBytes);
  return {
    samples: mixDown(data, frames, format),
    sampleRate: format.sampleRate,
    channels: format.channels,
  };
}

function parseFormat(view: DataView, at: number, size: number, fail: (why: string) => UserError): WavFormat {
  if (size < 16) throw fail(`fmt chunk too short (${size} bytes)`);
  let code = view.getUint16(at, true);
  const channels = view.getUint16(at + 2, true);
  const sampleRate = view.getUint32(at + 4, true);
  const blockAlign = view.getUint16(at + 12, true);
  const bits = view.getUint16(at + 14, true);
  if (code === WAVE_FORMAT_EXTENSIBLE) {
    if (size < 40) throw fail(`WAVE_FORMAT_EXTENSIBLE fmt chunk too short (${size} bytes)`);
    const guid = at + 24;
    code = view.getUint16(guid, true);
    const tailOk = SUBTYPE_GUID_TAIL.every((b, i) => view.getUint8(guid + 2 + i) === b);
    if (!tailOk) throw fail('unsupported WAVE_FORMAT_EXTENSIBLE sub-format (not PCM or IEEE float)');
  }
  if (channels === 0) throw fail('zero channels');
  if (sampleRate === 0) throw fail('sample rate 0');
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
function mixDown(data: Uint8Array, frames: number, fmt: WavFormat): Float32Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const read = sampleReader(view, fmt);
  const out = new Float32Array(frames);
  const step = fmt.bytesPerSample;
  let at = 0;
  for (let f = 0; f < frames; f += 1) {
    let sum = 0;
    for (let c = 0; c < fmt.channels; c += 1, at += step) sum += read(at);
    out[f] = sum / fmt.channels;
  }
  return out;
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
