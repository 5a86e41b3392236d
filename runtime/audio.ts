import { UserError } from '../common/errors.js';
import { minMelSamples } from './mel.js';
import { resample, StreamingResampler } from './resample.js';
import { SampleBuffer } from './sample-buffer.js';
import { streamWav, type WavFormat } from './wav.js';

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
 * peak exceeds 1 and clipped to [-1, 1]. The file is decoded and resampled block by block,
 * so only the 16 kHz result is ever held whole (64 kB per second of audio).
 */
export async function loadAudio(file: string): Promise<LoadedAudio> {
  let format: WavFormat | undefined;
  let resampler: StreamingResampler | undefined;
  let out = new SampleBuffer();
  let finite = true;
  streamWav(file, {
    begin(f, frames) {
      format = f;
      resampler = new StreamingResampler(f.sampleRate, MODEL_SAMPLE_RATE);
      out = new SampleBuffer(frames === undefined ? 0 : resampler.outputLength(frames));
    },
    samples(block) {
      if (finite && !block.every(Number.isFinite)) finite = false;
      // NaN would spread through the filter; the file is refused below anyway.
      if (finite) out.append((resampler as StreamingResampler).push(block));
    },
  });
  if (!finite) throw new UserError(`${file}: contains NaN or infinite samples`);
  out.append((resampler as StreamingResampler).finish());
  const samples = out.result();
  normalisePeak(samples);
  if (samples.length < minMelSamples()) {
    throw new UserError(`${file}: audio too short (${samples.length} samples at 16 kHz; need at least ${minMelSamples()})`);
  }
  const f = format as WavFormat;
  return { samples, sourceRate: f.sampleRate, sourceChannels: f.channels, durationS: samples.length / MODEL_SAMPLE_RATE };
}

/** Resamples mono samples to 16 kHz and applies the official float-range normalisation. */
export function prepareSamples(mono: Float32Array, sampleRate: number): Float32Array {
  const audio = sampleRate === MODEL_SAMPLE_RATE ? mono.slice() : resample(mono, sampleRate, MODEL_SAMPLE_RATE);
  normalisePeak(audio);
  return audio;
}

/** Divides by the peak and clips to [-1, 1] when the peak exceeds 1 (in place). */
function normalisePeak(audio: Float32Array): void {
  let peak = 0;
  for (let i = 0; i < audio.length; i += 1) {
    const a = Math.abs(audio[i]);
    if (a > peak) peak = a;
  }
  if (peak > 1) {
    for (let i = 0; i < audio.length; i += 1) audio[i] = Math.max(-1, Math.min(1, audio[i] / peak));
  }
}
