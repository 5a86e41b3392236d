import type * as ort from 'onnxruntime-node';
import type { OutputConfig } from '../model-dir/config.js';
import type { DecodeOptions, GreedyResult } from './decode.js';
import type { LogMel } from './mel.js';
import type { Prompt } from './prompt.js';
import type { Tokenizer } from './tokenizer.js';

/**
 * What transcribe, wer and the other runtime users need of a loaded model directory, whatever
 * its layout: the split layout (encoder / decoder_init / decoder_step, runtime/session.ts) or the
 * sherpa-onnx layout (conv_frontend / encoder / one decoder, runtime/sherpa-session.ts).
 */

export type ModelLayout = 'split' | 'sherpa-onnx';

/** The encoder's result as the decoder takes it. */
export interface EncodedAudio {
  /** audio_features [1, A, H]: A >= audioTokens (the sherpa layout keeps padded rows it did not trim). */
  features: ort.Tensor;
  /** Audio placeholders the prompt carries (the valid encoder rows). */
  audioTokens: number;
}

export interface SpeechModel {
  readonly dir: string;
  readonly layout: ModelLayout;
  readonly variant: string;
  readonly config: OutputConfig;
  readonly tokenizer: Tokenizer;
  /** Wall time of the load, milliseconds. */
  readonly loadMs: number;
  /** Log-mel features -> audio features. */
  encode(mel: LogMel): Promise<EncodedAudio>;
  /** Prefill + greedy loop, with the split runtime's stop rules (EOS ids, max tokens, repetition guard). */
  decode(prompt: Prompt, audio: EncodedAudio, opts: DecodeOptions): Promise<GreedyResult>;
  release(): Promise<void>;
}
