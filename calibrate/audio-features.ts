import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { loadAudio } from '../runtime/audio.js';
import { audioTokenCount } from '../runtime/decode.js';
import { logMelSpectrogram } from '../runtime/mel.js';
import { graphFileName } from '../model-dir/files.js';

/** The float encoder of a model directory: WAV file -> audio_features [1, A, hidden]. */
export class AudioEncoder {
  private constructor(private readonly session: ort.InferenceSession, readonly path: string, private readonly hidden: number) {}

  static async open(modelDir: string, hidden: number, opts: { threads?: number } = {}): Promise<AudioEncoder> {
    const path = join(modelDir, graphFileName('encoder'));
    try {
      const session = await ort.InferenceSession.create(path, opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {});
      return new AudioEncoder(session, path, hidden);
    } catch (err) {
      throw new UserError(`${path}: onnxruntime cannot load it (${String((err as Error)?.message ?? err).split('\n')[0]})`);
    }
  }

  async encodeFile(file: string): Promise<{ features: ort.Tensor; audioTokens: number }> {
    const audio = await loadAudio(file);
    const mel = logMelSpectrogram(audio.samples);
    const out = await this.session.run({ mel: new ort.Tensor('float32', mel.data, [1, mel.nMels, mel.frames]) });
    const features = out.audio_features;
    const expected = audioTokenCount(mel.frames);
    if (!features || features.dims.length !== 3 || features.dims[1] !== expected || features.dims[2] !== this.hidden) {
      throw new UserError(`${this.path}: audio_features for ${file} has shape [${features?.dims.join(', ') ?? ''}], expected [1, ${expected}, ${this.hidden}]`);
    }
    return { features, audioTokens: expected };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
