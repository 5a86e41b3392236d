/**
 * Mixed-radix complex FFT (decimation in time, any size; radix 4, 2, 3, 5, then any prime),
 * plus a helper that transforms two real frames with one complex FFT. Size 400 = 4*4*5*5
 * is what the mel front end needs.
 */
export class Fft {
  readonly size: number;
  /** Output slot i of the first stage reads input perm[i] (mixed-radix digit reversal). */
  private readonly perm: Int32Array;
  private readonly stages: Stage[];
  private readonly scratchRe: Float64Array;
  private readonly scratchIm: Float64Array;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`FFT size must be a positive integer, got ${size}`);
    this.size = size;
    const factors = factorize(size);
    this.perm = new Int32Array(size);
    let slot = 0;
    // The recursive decimation-in-time order of leaves: sub-sequence q of a length-n
    // transform takes every p-th input starting at q.
    const visit = (offset: number, stride: number, level: number): void => {
      const p = factors[level];
      if (p === undefined) { this.perm[slot] = offset; slot += 1; return; }
      for (let q = 0; q < p; q += 1) visit(offset + q * stride, stride * p, level + 1);
    };
    visit(0, 1, 0);
    // Stages run innermost first: radix p combines p sub-transforms of length m into length p*m.
    this.stages = [];
    let m = 1;
    for (let level = factors.length - 1; level >= 0; level -= 1) {
      const p = factors[level];
      const n = p * m;
      const twRe = new Float64Array((p - 1) * m);
      const twIm = new Float64Array((p - 1) * m);
      for (let q = 1; q < p; q += 1) {
        for (let k = 0; k < m; k += 1) {
          twRe[(q - 1) * m + k] = Math.cos((-2 * Math.PI * q * k) / n);
          twIm[(q - 1) * m + k] = Math.sin((-2 * Math.PI * q * k) / n);
        }
      }
      const rootRe = Float64Array.from({ length: p }, (_, j) => Math.cos((-2 * Math.PI * j) / p));
      const rootIm = Float64Array.from({ length: p }, (_, j) => Math.sin((-2 * Math.PI * j) / p));
      this.stages.push({ p, m, twRe, twIm, rootRe, rootIm });
      m = n;
    }
    const maxRadix = Math.max(1, ...factors);
    this.scratchRe = new Float64Array(maxRadix);
    this.scratchIm = new Float64Array(maxRadix);
  }

  /** out = DFT(in), X[k] = sum_n x[n] e^{-2 pi i k n / N}. In and out must not alias. */
  transform(inRe: Float64Array, inIm: Float64Array, outRe: Float64Array, outIm: Float64Array): void {
    const perm = this.perm;
    for (let i = 0; i < this.size; i += 1) { outRe[i] = inRe[perm[i]]; outIm[i] = inIm[perm[i]]; }
    for (const stage of this.stages) {
      switch (stage.p) {
        case 2: radix2(stage, this.size, outRe, outIm); break;
        case 4: radix4(stage, this.size, outRe, outIm); break;
        case 5: radix5(stage, this.size, outRe, outIm); break;
        default: radixGeneric(stage, this.size, outRe, outIm, this.scratchRe, this.scratchIm);
      }
    }
  }
}

/**
 * One decimation-in-time pass: in every block of p*m values, X[k + r m] =
 * sum_q (W_{pm}^{qk} S_q[k]) W_p^{qr}, where S_q[k] sits at q*m + k.
 */
interface Stage {
  p: number;
  m: number;
  /** W_{pm}^{qk} at (q-1)*m + k. */
  twRe: Float64Array;
  twIm: Float64Array;
  /** W_p^j. */
  rootRe: Float64Array;
  rootIm: Float64Array;
}

function radix2({ m, twRe, twIm }: Stage, size: number, re: Float64Array, im: Float64Array): void {
  for (let block = 0; block < size; block += 2 * m) {
    for (let k = 0; k < m; k += 1) {
      const i0 = block + k;
      const i1 = i0 + m;
      const br = re[i1] * twRe[k] - im[i1] * twIm[k];
      const bi = re[i1] * twIm[k] + im[i1] * twRe[k];
      re[i1] = re[i0] - br; im[i1] = im[i0] - bi;
      re[i0] += br; im[i0] += bi;
    }
  }
}

function radix4({ m, twRe, twIm }: Stage, size: number, re: Float64Array, im: Float64Array): void {
  for (let block = 0; block < size; block += 4 * m) {
    for (let k = 0; k < m; k += 1) {
      const i0 = block + k; const i1 = i0 + m; const i2 = i1 + m; const i3 = i2 + m;
      const w1r = twRe[k]; const w1i = twIm[k];
      const w2r = twRe[m + k]; const w2i = twIm[m + k];
      const w3r = twRe[2 * m + k]; const w3i = twIm[2 * m + k];
      const a0r = re[i0]; const a0i = im[i0];
      const a1r = re[i1] * w1r - im[i1] * w1i; const a1i = re[i1] * w1i + im[i1] * w1r;
      const a2r = re[i2] * w2r - im[i2] * w2i; const a2i = re[i2] * w2i + im[i2] * w2r;
      const a3r = re[i3] * w3r - im[i3] * w3i; const a3i = re[i3] * w3i + im[i3] * w3r;
      const t0r = a0r + a2r; const t0i = a0i + a2i;
      const t1r = a0r - a2r; const t1i = a0i - a2i;
      const t2r = a1r + a3r; const t2i = a1i + a3i;
      const t3r = a1r - a3r; const t3i = a1i - a3i;
      re[i0] = t0r + t2r; im[i0] = t0i + t2i;
      re[i2] = t0r - t2r; im[i2] = t0i - t2i;
      // y1 = t1 - i t3, y3 = t1 + i t3
      re[i1] = t1r + t3i; im[i1] = t1i - t3r;
      re[i3] = t1r - t3i; im[i3] = t1i + t3r;
    }
  }
}

const C1 = Math.cos((2 * Math.PI) / 5);
const C2 = Math.cos((4 * Math.PI) / 5);
const S1 = Math.sin((2 * Math.PI) / 5);
const S2 = Math.sin((4 * Math.PI) / 5);

function radix5({ m, twRe, twIm }: Stage, size: number, re: Float64Array, im: Float64Array): void {
  for (let block = 0; block < size; block += 5 * m) {
    for (let k = 0; k < m; k += 1) {
      const i0 = block + k; const i1 = i0 + m; const i2 = i1 + m; const i3 = i2 + m; const i4 = i3 + m;
      const a0r = re[i0]; const a0i = im[i0];
      let w = k;
      const a1r = re[i1] * twRe[w] - im[i1] * twIm[w]; const a1i = re[i1] * twIm[w] + im[i1] * twRe[w];
      w += m;
      const a2r = re[i2] * twRe[w] - im[i2] * twIm[w]; const a2i = re[i2] * twIm[w] + im[i2] * twRe[w];
      w += m;
      const a3r = re[i3] * twRe[w] - im[i3] * twIm[w]; const a3i = re[i3] * twIm[w] + im[i3] * twRe[w];
      w += m;
      const a4r = re[i4] * twRe[w] - im[i4] * twIm[w]; const a4i = re[i4] * twIm[w] + im[i4] * twRe[w];
      const b1r = a1r + a4r; const b1i = a1i + a4i; const d1r = a1r - a4r; const d1i = a1i - a4i;
      const b2r = a2r + a3r; const b2i = a2i + a3i; const d2r = a2r - a3r; const d2i = a2i - a3i;
      // y1,4 = A1 -+ i S1x, y2,3 = A2 -+ i S2x
      const A1r = a0r + C1 * b1r + C2 * b2r; const A1i = a0i + C1 * b1i + C2 * b2i;
      const A2r = a0r + C2 * b1r + C1 * b2r; const A2i = a0i + C2 * b1i + C1 * b2i;
      const X1r = S1 * d1r + S2 * d2r; const X1i = S1 * d1i + S2 * d2i;
      const X2r = S2 * d1r - S1 * d2r; const X2i = S2 * d1i - S1 * d2i;
      re[i0] = a0r + b1r + b2r; im[i0] = a0i + b1i + b2i;
      re[i1] = A1r + X1i; im[i1] = A1i - X1r;
      re[i4] = A1r - X1i; im[i4] = A1i + X1r;
      re[i2] = A2r + X2i; im[i2] = A2i - X2r;
      re[i3] = A2r - X2i; im[i3] = A2i + X2r;
    }
  }
}

function radixGeneric(
  { p, m, twRe, twIm, rootRe, rootIm }: Stage, size: number, re: Float64Array, im: Float64Array,
  sRe: Float64Array, sIm: Float64Array,
): void {
  for (let block = 0; block < size; block += p * m) {
    for (let k = 0; k < m; k += 1) {
      sRe[0] = re[block + k]; sIm[0] = im[block + k];
      for (let q = 1; q < p; q += 1) {
        const i = block + q * m + k;
        const wr = twRe[(q - 1) * m + k];
        const wi = twIm[(q - 1) * m + k];
        sRe[q] = re[i] * wr - im[i] * wi;
        sIm[q] = re[i] * wi + im[i] * wr;
      }
      for (let r = 0; r < p; r += 1) {
        let accRe = 0;
        let accIm = 0;
        let j = 0;
        for (let q = 0; q < p; q += 1) {
          accRe += sRe[q] * rootRe[j] - sIm[q] * rootIm[j];
          accIm += sRe[q] * rootIm[j] + sIm[q] * rootRe[j];
          j += r;
          if (j >= p) j -= p;
        }
        re[block + r * m + k] = accRe;
        im[block + r * m + k] = accIm;
      }
    }
  }
}

/**
 * Power spectra |X[k]|^2, k = 0..N/2, of two real frames a and b with one complex FFT of
 * z = a + i b: A[k] = (Z[k] + conj Z[N-k]) / 2, B[k] = (Z[k] - conj Z[N-k]) / 2i.
 */
export class RealPairPowerSpectrum {
  readonly bins: number;
  private readonly fft: Fft;
  private readonly zRe: Float64Array;
  private readonly zIm: Float64Array;

  constructor(readonly size: number) {
    this.fft = new Fft(size);
    this.bins = Math.floor(size / 2) + 1;
    this.zRe = new Float64Array(size);
    this.zIm = new Float64Array(size);
  }

  /** a and b hold `size` real samples each; powA/powB receive `bins` values. */
  compute(a: Float64Array, b: Float64Array, powA: Float64Array, powB: Float64Array): void {
    const n = this.size;
    this.fft.transform(a, b, this.zRe, this.zIm);
    const zr = this.zRe;
    const zi = this.zIm;
    for (let k = 0; k < this.bins; k += 1) {
      const j = k === 0 ? 0 : n - k;
      const aRe = (zr[k] + zr[j]) / 2;
      const aIm = (zi[k] - zi[j]) / 2;
      const bRe = (zi[k] + zi[j]) / 2;
      const bIm = (zr[j] - zr[k]) / 2;
      powA[k] = aRe * aRe + aIm * aIm;
      powB[k] = bRe * bRe + bIm * bIm;
    }
  }
}

function factorize(n: number): number[] {
  const out: number[] = [];
  for (const p of [4, 2, 3, 5]) {
    while (n % p === 0) { out.push(p); n /= p; }
  }
  for (let p = 7; n > 1; p += 2) {
    while (n % p === 0) { out.push(p); n /= p; }
    if (p * p > n && n > 1) { out.push(n); n = 1; }
  }
  return out;
}
