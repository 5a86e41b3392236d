import { detectLayout } from '../model-dir/layout.js';
import { AsrModel } from './session.js';
import { SherpaAsrModel } from './sherpa-session.js';
import type { SpeechModel } from './speech-model.js';

/**
 * Loads a model directory of either layout, as its config.json or files say (model-dir/layout.ts
 * detectLayout). One directory holds one layout (both have an encoder.onnx), so there is never a
 * choice to make between them here.
 */
export async function loadSpeechModel(dir: string, opts: { variant?: string; threads?: number; prepack?: boolean } = {}): Promise<SpeechModel> {
  return (await detectLayout(dir)) === 'sherpa-onnx' ? SherpaAsrModel.load(dir, opts) : AsrModel.load(dir, opts);
}
