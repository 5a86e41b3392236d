/**
 * Encodes WAV files (used by tests to craft inputs in every layout the reader accepts).
 * Samples are given per channel in [-1, 1]; integer formats round and clamp.
 */
export interface WavSpec {
  sampleRate: number;
  /** One array per channel, all the same length. */
  channels: Float32Array[] | Float64Array[];
  encoding: 'pcm8' | 'pcm16' | 'pcm24' | 'pcm32' | 'float32' | 'float64';
  /** Write a WAVE_FORMAT_EXTENSIBLE fmt chunk instead of the plain one. */
  extensible?: boolean;
  /** Extra chunks written between fmt and data (e.g. LIST), odd sizes padded. */
  extraChunks?: { id: string; body: Uint8Array }[];
}

const BITS: Record<WavSpec['encoding'], number> = { pcm8: 8, pcm16: 16, pcm24: 24, pcm32: 32, float32: 32, float64: 64 };

export function encodeWav(spec: WavSpec): Uint8Array {
  const channels = spec.channels.length;
  const frames = channels ? spec.channels[0].length : 0;
  const bits = BITS[spec.encoding];
  const bytes = bits / 8;
  const isFloat = spec.encoding.startsWith('float');
  const data = new Uint8Array(frames * channels * bytes);
  const dv = new DataView(data.buffer);
  let at = 0;
  for (let f = 0; f < frames; f += 1) {
    for (let c = 0; c < channels; c += 1, at += bytes) {
      const x = spec.channels[c][f];
      const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, Math.round(v)));
      switch (spec.encoding) {
        case 'pcm8': dv.setUint8(at, clamp(x * 128 + 128, 0, 255)); break;
        case 'pcm16': dv.setInt16(at, clamp(x * 32768, -32768, 32767), true); break;
        case 'pcm24': {
          const v = clamp(x * 8388608, -8388608, 8388607);
          dv.setUint8(at, v & 0xff); dv.setUint8(at + 1, (v >> 8) & 0xff); dv.setUint8(at + 2, (v >> 16) & 0xff);
          break;
        }
        case 'pcm32': dv.setInt32(at, clamp(x * 2147483648, -2147483648, 2147483647), true); break;
        case 'float32': dv.setFloat32(at, x, true); break;
        case 'float64': dv.setFloat64(at, x, true); break;
      }
    }
  }
  const code = isFloat ? 3 : 1;
  const fmt = new Uint8Array(spec.extensible ? 40 : 16);
  const fv = new DataView(fmt.buffer);
  fv.setUint16(0, spec.extensible ? 0xfffe : code, true);
  fv.setUint16(2, channels, true);
  fv.setUint32(4, spec.sampleRate, true);
  fv.setUint32(8, spec.sampleRate * channels * bytes, true);
  fv.setUint16(12, channels * bytes, true);
  fv.setUint16(14, bits, true);
  if (spec.extensible) {
    fv.setUint16(16, 22, true); // cbSize
    fv.setUint16(18, bits, true); // valid bits
    fv.setUint32(20, 0, true); // channel mask
    fmt.set([code & 0xff, code >> 8, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71], 24);
  }
  const chunks = [{ id: 'fmt ', body: fmt }, ...(spec.extraChunks ?? []), { id: 'data', body: data }];
  return riff(chunks);
}

/** Assembles a RIFF/WAVE file from raw chunks (pad byte after odd-sized ones). */
export function riff(chunks: { id: string; body: Uint8Array; declaredSize?: number }[]): Uint8Array {
  const size = chunks.reduce((s, c) => s + 8 + c.body.length + (c.body.length & 1), 4);
  const out = new Uint8Array(8 + size);
  const dv = new DataView(out.buffer);
  const tag = (at: number, id: string): void => { for (let i = 0; i < 4; i += 1) out[at + i] = id.charCodeAt(i); };
  tag(0, 'RIFF');
  dv.setUint32(4, size, true);
  tag(8, 'WAVE');
  let at = 12;
  for (const c of chunks) {
    tag(at, c.id);
    dv.setUint32(at + 4, c.declaredSize ?? c.body.length, true);
    out.set(c.body, at + 8);
    at += 8 + c.body.length + (c.body.length & 1);
  }
  return out;
}
