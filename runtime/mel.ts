import { RealPairPowerSpectrum } from './fft.js';

/**
 * Whisper-compatible log-mel features (WhisperFeatureExtractor as the Qwen3-ASR processor
 * calls it: batch of one, padding "longest" = no padding, so no 30 s padding):
 * periodic Hann window, centred STFT with reflect padding, power spectrum, the last frame
 * dropped (T = floor(samples / hop)), Slaney mel filter bank, log10(max(x, 1e-10)),
 * max(x, global max - 8), (x + 4) / 4.
 */
export interface MelParams {
  sampleRate: number;
  nFft: number;
  hopLength: number;
  nMels: number;
  fmin: number;
  fmax: number;
}

export const WHISPER_MEL: MelParams = { sampleRate: 16000, nFft: 400, hopLength: 160, nMels: 128, fmin: 0, fmax: 8000 };

/** Log-mel features, mel-bin-major: value(m, t) = data[m * frames + t] (the encoder's [1, nMels, T]). */
export interface LogMel {
  data: Float32Array;
  nMels: number;
  frames: number;
}

/** Frames a signal of `samples` yields: the centred STFT's floor(n/hop)+1 frames minus the dropped last one. */
export function melFrameCount(samples: number, hopLength = WHISPER_MEL.hopLength): number {
  return Math.floor(samples / hopLength);
}

/** Fewest samples the centred reflect padding accepts (torch.stft needs n_fft/2 < length). */
export function minMelSamples(params: MelParams = WHISPER_MEL): number {
  return Math.floor(params.nFft / 2) + 1;
}

/** Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above. */
export function hzToMelSlaney(hz: number): number {
  const fSp = 200 / 3;
  const minLogHz = 1000;
  const minLogMel = minLogHz / fSp;
  const logStep = Math.log(6.4) / 27;
  return hz >= minLogHz ? minLogMel + Math.log(hz / minLogHz) / logStep : hz / fSp;
}

export function melToHzSlaney(mel: number): number {
  const fSp = 200 / 3;
  const minLogHz = 1000;
  const minLogMel = minLogHz / fSp;
  const logStep = Math.log(6.4) / 27;
  return mel >= minLogMel ? minLogHz * Math.exp(logStep * (mel - minLogMel)) : fSp * mel;
}

/**
 * One triangular filter per mel band as a sparse row over FFT bins, Slaney-normalised
 * (area 2 / (f[m+2] - f[m])), as transformers' mel_filter_bank(norm="slaney", mel_scale="slaney").
 */
export interface MelFilter { firstBin: number; weights: Float64Array }

export function melFilterBank(params: MelParams = WHISPER_MEL): MelFilter[] {
  const bins = Math.floor(params.nFft / 2) + 1;
  const melMin = hzToMelSlaney(params.fmin);
  const melMax = hzToMelSlaney(params.fmax);
  const edges = Array.from({ length: params.nMels + 2 }, (_, i) =>
    melToHzSlaney(melMin + ((melMax - melMin) * i) / (params.nMels + 1)));
  // np.linspace(0, sampling_rate // 2, bins)
  const nyquist = Math.floor(params.sampleRate / 2);
  const fftHz = Array.from({ length: bins }, (_, k) => (nyquist * k) / (bins - 1));
  const filters: MelFilter[] = [];
  for (let m = 0; m < params.nMels; m += 1) {
    const [lo, centre, hi] = [edges[m], edges[m + 1], edges[m + 2]];
    const norm = 2 / (hi - lo);
    const row = fftHz.map((f) => Math.max(0, Math.min((f - lo) / (centre - lo), (hi - f) / (hi - centre))) * norm);
    let first = row.findIndex((w) => w > 0);
    if (first < 0) first = 0;
    let last = row.length - 1;
    while (last > first && row[last] === 0) last -= 1;
    filters.push({ firstBin: first, weights: Float64Array.from(row.slice(first, last + 1)) });
  }
  return filters;
}

const filterCache = new Map<string, MelFilter[]>();

/** Computes the log-mel features of 16 kHz mono samples. */
export function logMelSpectrogram(samples: Float32Array, params: MelParams = WHISPER_MEL): LogMel {
  const { nFft, hopLength, nMels } = params;
  const half = Math.floor(nFft / 2);
  const n = samples.length;
  if (n <= half) throw new RangeError(`audio too short for the mel front end: ${n} samples, need more than ${half}`);
  const frames = melFrameCount(n, hopLength);
  const key = JSON.stringify(params);
  let filters = filterCache.get(key);
  if (!filters) { filters = melFilterBank(params); filterCache.set(key, filters); }

  const window = new Float64Array(nFft);
  for (let i = 0; i < nFft; i += 1) window[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / nFft);
  // Sample of the reflect-padded signal at padded index i (original index i - half).
  const padded = (i: number): number => {
    let j = i - half;
    if (j < 0) j = -j;
    else if (j >= n) j = 2 * (n - 1) - j;
    return samples[j];
  };
  const fill = (frame: number, out: Float64Array): void => {
    if (frame >= frames) { out.fill(0); return; }
    const start = frame * hopLength;
    if (start >= half && start - half + nFft <= n) {
      for (let i = 0; i < nFft; i += 1) out[i] = samples[start - half + i] * window[i];
    } else {
      for (let i = 0; i < nFft; i += 1) out[i] = padded(start + i) * window[i];
    }
  };

  const spectrum = new RealPairPowerSpectrum(nFft);
  const frameA = new Float64Array(nFft);
  const frameB = new Float64Array(nFft);
  const powA = new Float64Array(spectrum.bins);
  const powB = new Float64Array(spectrum.bins);
  const logMel = new Float64Array(nMels * frames);
  let max = -Infinity;
  const project = (pow: Float64Array, t: number): void => {
    for (let m = 0; m < nMels; m += 1) {
      const { firstBin, weights } = filters[m];
      let acc = 0;
      for (let k = 0; k < weights.length; k += 1) acc += weights[k] * pow[firstBin + k];
      const v = Math.log10(Math.max(acc, 1e-10));
      logMel[m * frames + t] = v;
      if (v > max) max = v;
    }
  };
  for (let t = 0; t < frames; t += 2) {
    fill(t, frameA);
    fill(t + 1, frameB);
    spectrum.compute(frameA, frameB, powA, powB);
    project(powA, t);
    if (t + 1 < frames) project(powB, t + 1);
  }

  const floor = max - 8;
  const data = new Float32Array(logMel.length);
  for (let i = 0; i < logMel.length; i += 1) data[i] = (Math.max(logMel[i], floor) + 4) / 4;
  return { data, nMels, frames };
}
