/**
 * Band-limited sample-rate conversion: a Kaiser-windowed sinc low-pass evaluated as a
 * polyphase filter bank for the rational ratio up/down = to/from (reduced by their gcd).
 * The cutoff sits just below the lower of the two Nyquist frequencies, so downsampling
 * does not alias and upsampling does not image. Output sample n sits at input time
 * n * from / to (zero phase, no delay), and ceil(len * to / from) samples come out, like
 * librosa.resample.
 */

/** Sinc zero crossings on each side of the kernel centre. */
const ZERO_CROSSINGS = 32;
/** Kaiser beta: about 90 dB stop-band attenuation. */
const KAISER_BETA = 9;
/** Passband edge as a fraction of the lower Nyquist (the transition band ends at Nyquist). */
const ROLLOFF = 0.94;
/** Above this many coefficients the filter bank is sampled from a dense kernel table instead. */
const MAX_BANK_COEFFICIENTS = 1 << 22;
/** Kernel table resolution (samples per input sample) for ratios with very many phases. */
const TABLE_OVERSAMPLING = 2048;

export function resample(input: Float32Array, fromRate: number, toRate: number): Float32Array {
  if (!(Number.isInteger(fromRate) && fromRate > 0 && Number.isInteger(toRate) && toRate > 0)) {
    throw new RangeError(`sample rates must be positive integers, got ${fromRate} -> ${toRate}`);
  }
  if (fromRate === toRate) return input.slice();
  const g = gcd(fromRate, toRate);
  const up = toRate / g;
  const down = fromRate / g;
  const outLength = Math.ceil((input.length * up) / down);
  const out = new Float32Array(outLength);
  if (input.length === 0) return out;

  // Cutoff in cycles per input sample; the kernel spans ZERO_CROSSINGS sinc lobes each side.
  const cutoff = 0.5 * Math.min(1, up / down) * ROLLOFF;
  const halfWidth = ZERO_CROSSINGS / (2 * cutoff);
  const taps = 2 * Math.ceil(halfWidth);
  const bank = buildBank(up, taps, cutoff, halfWidth);

  // Output n reads input[base .. base+taps-1] with base = floor(n*down/up) - taps/2 + 1.
  const half = taps / 2;
  const last = input.length - 1;
  let whole = 0; // floor(n * down / up)
  let phase = 0; // (n * down) mod up
  for (let n = 0; n < outLength; n += 1) {
    const base = whole - half + 1;
    const coef = phase * taps;
    let acc = 0;
    if (base >= 0 && base + taps - 1 <= last) {
      for (let m = 0; m < taps; m += 1) acc += bank[coef + m] * input[base + m];
    } else {
      const mStart = Math.max(0, -base);
      const mEnd = Math.min(taps, last - base + 1);
      for (let m = mStart; m < mEnd; m += 1) acc += bank[coef + m] * input[base + m];
    }
    out[n] = acc;
    phase += down;
    whole += Math.floor(phase / up);
    phase %= up;
  }
  return out;
}

/**
 * Row p holds the taps for an output whose input position has fractional part p/up:
 * coefficient m weighs input sample floor(x) - taps/2 + 1 + m. Each row is normalised to
 * unit DC gain so a constant signal stays exactly constant.
 */
function buildBank(up: number, taps: number, cutoff: number, halfWidth: number): Float64Array {
  const bank = new Float64Array(up * taps);
  const kernel = up * taps <= MAX_BANK_COEFFICIENTS
    ? (t: number) => windowedSinc(t, cutoff, halfWidth)
    : tabulatedKernel(cutoff, halfWidth);
  const half = taps / 2;
  for (let p = 0; p < up; p += 1) {
    const frac = p / up;
    let sum = 0;
    for (let m = 0; m < taps; m += 1) {
      const v = kernel(frac + half - 1 - m);
      bank[p * taps + m] = v;
      sum += v;
    }
    for (let m = 0; m < taps; m += 1) bank[p * taps + m] /= sum;
  }
  return bank;
}

/** 2 fc sinc(2 fc t) under a Kaiser window reaching zero at |t| = halfWidth. */
export function windowedSinc(t: number, cutoff: number, halfWidth: number): number {
  const r = t / halfWidth;
  if (r <= -1 || r >= 1) return 0;
  const x = 2 * cutoff * t;
  const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
  return 2 * cutoff * sinc * (besselI0(KAISER_BETA * Math.sqrt(1 - r * r)) / besselI0(KAISER_BETA));
}

/** The same kernel, linearly interpolated from a dense table (for ratios with huge phase counts). */
function tabulatedKernel(cutoff: number, halfWidth: number): (t: number) => number {
  const n = Math.ceil(halfWidth * TABLE_OVERSAMPLING) + 2;
  const table = new Float64Array(n);
  for (let i = 0; i < n; i += 1) table[i] = windowedSinc(i / TABLE_OVERSAMPLING, cutoff, halfWidth);
  return (t: number) => {
    const x = Math.abs(t) * TABLE_OVERSAMPLING;
    const i = Math.floor(x);
    if (i + 1 >= n) return 0;
    const f = x - i;
    return table[i] * (1 - f) + table[i + 1] * f;
  };
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for x < 30). */
export function besselI0(x: number): number {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 200; k += 1) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The same conversion fed block by block: `push` returns the output samples whose input
 * window is complete, `finish` the rest. Concatenated, the blocks equal `resample(input)`
 * bit for bit, while only one filter length of input is held (so a long file never needs its
 * source-rate samples in memory at once).
 */
export class StreamingResampler {
  private readonly up: number;
  private readonly down: number;
  private readonly taps: number;
  private readonly half: number;
  private readonly bank: Float64Array | undefined;
  /** Input not yet consumed; pending[0] is input sample `pendingStart`. */
  private pending = new Float32Array(0);
  private pendingStart = 0;
  private received = 0;
  /** Next output index, and floor(n * down / up) and (n * down) mod up for it. */
  private n = 0;
  private whole = 0;
  private phase = 0;

  constructor(readonly fromRate: number, readonly toRate: number) {
    if (!(Number.isInteger(fromRate) && fromRate > 0 && Number.isInteger(toRate) && toRate > 0)) {
      throw new RangeError(`sample rates must be positive integers, got ${fromRate} -> ${toRate}`);
    }
    const g = gcd(fromRate, toRate);
    this.up = toRate / g;
    this.down = fromRate / g;
    const cutoff = 0.5 * Math.min(1, this.up / this.down) * ROLLOFF;
    const halfWidth = ZERO_CROSSINGS / (2 * cutoff);
    this.taps = 2 * Math.ceil(halfWidth);
    this.half = this.taps / 2;
    this.bank = fromRate === toRate ? undefined : buildBank(this.up, this.taps, cutoff, halfWidth);
  }

  /** Output length for `inputLength` input samples (as resample). */
  outputLength(inputLength: number): number {
    return this.bank ? Math.ceil((inputLength * this.up) / this.down) : inputLength;
  }

  push(block: Float32Array): Float32Array {
    if (!this.bank) { this.received += block.length; this.n += block.length; return block.slice(); }
    const joined = new Float32Array(this.pending.length + block.length);
    joined.set(this.pending);
    joined.set(block, this.pending.length);
    this.pending = joined;
    this.received += block.length;
    // Output n is complete once its last tap, whole - half + taps, has arrived.
    return this.emit((whole) => whole + this.half < this.received, Infinity);
  }

  finish(): Float32Array {
    if (!this.bank) return new Float32Array(0);
    return this.emit(() => true, this.outputLength(this.received));
  }

  private emit(ready: (whole: number) => boolean, limit: number): Float32Array {
    const bank = this.bank as Float64Array;
    const { taps, half, up, down } = this;
    const out: number[] = [];
    const last = this.received - 1;
    while (this.n < limit && ready(this.whole)) {
      const base = this.whole - half + 1;
      const coef = this.phase * taps;
      const mStart = Math.max(0, -base);
      const mEnd = Math.min(taps, last - base + 1);
      const offset = base - this.pendingStart;
      let acc = 0;
      for (let m = mStart; m < mEnd; m += 1) acc += bank[coef + m] * this.pending[offset + m];
      out.push(acc);
      this.n += 1;
      this.phase += down;
      this.whole += Math.floor(this.phase / up);
      this.phase %= up;
    }
    // Keep only the input the next output can still read.
    const keepFrom = Math.max(0, Math.min(this.received, this.whole - half + 1));
    if (keepFrom > this.pendingStart) {
      this.pending = this.pending.slice(keepFrom - this.pendingStart);
      this.pendingStart = keepFrom;
    }
    return Float32Array.from(out);
  }
}
