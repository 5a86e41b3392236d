import { UserError } from '../common/errors.js';
import { minMelSamples } from './mel.js';
import { resample } from './resample.js';
import { readWav } from './wav.js';

export const MODEL_SAMPLE_RATE = 16000;

export interface LoadedAudio {
  /** Mono samples at 16 kHz in [-1, 1]. */
  samples: Float32Array;
  /** The file's own rate and channel count (before mix-down and resampling). */
  sourceRate: number;
  sourceChannels: number;
  durationS: number;
}

/**
 * Loads a WAV file the way the official pipeline prepares audio (normalize_audio_input):
 * mono by averaging channels, resampled to 16 kHz, then divided by its peak when the
 * peak exceeds 1 and clipped to [-1, 1].
 */
export async function loadAudio(file: string): Promise<LoadedAudio> {
  const wav = await readWav(file);
  if (!wav.samples.every(Number.isFinite)) throw new UserError(`${file}: contains NaN or infinite samples`);
  const samples = prepareSamples(wav.samples, wav.sampleRate);
  if (samples.length < minMelSamples()) {
    throw new UserError(`${file}: audio too short (${samples.length} samples at 16 kHz; need at least ${minMelSamples()})`);
  }
  return { samples, sourceRate: wav.sampleRate, sourceChannels: wav.channels, durationS: samples.length / MODEL_SAMPLE_RATE };
}

/** Resamples mono samples to 16 kHz and applies the official float-range normalisation. */
export function prepareSamples(mono: Float32Array, sampleRate: number): Float32Array {
  const audio = sampleRate === MODEL_SAMPLE_RATE ? mono.slice() : resample(mono, sampleRate, MODEL_SAMPLE_RATE);
  let peak = 0;
  for (let i = 0; i < audio.length; i += 1) {
    const a = Math.abs(audio[i]);
    if (a > peak) peak = a;
  }
  if (peak > 1) {
    for (let i = 0; i < audio.length; i += 1) audio[i] = Math.max(-1, Math.min(1, audio[i] / peak));
  }
  return audio;
}
