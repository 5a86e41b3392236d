import type * as ort from 'onnxruntime-node';
import { loadModel } from '../common/onnx/index.js';
import { loadAudio } from '../runtime/audio.js';
import { logMelSpectrogram } from '../runtime/mel.js';
import { buildPrompt, endsInRepeatedCycle } from '../runtime/prompt.js';
import { cacheFeeds, decoderCall } from '../runtime/sherpa-decode.js';
import { SherpaAsrModel } from '../runtime/sherpa-session.js';
import type { PassCounts } from './decoder-calibrator.js';
import type { NormStats } from './stats-file.js';
import { TapStats } from './tap-stats.js';
import { openTappedSession, type TappedSession } from './tapped-session.js';

/**
 * calibrate on a sherpa-onnx layout model directory: the float model run as our sherpa runtime
 * runs it (runtime/sherpa-decode.ts: conv_frontend -> encoder -> trimmed audio features, the
 * prompt with sherpa's valid token count), the decoder calls made on a tapped copy of
 * decoder.onnx over the runtime's cache buffers, every norm output added to the same statistics
 * the split layout's calibrator records (tap-stats.ts). The decoder is built from the split
 * layout's make-functions, so the norms have the same keys:
 *
 *   mel --conv_frontend/encoder--> audio_features, prompt
 *   prompt ids --tapped decoder (cache_position 0..S-1)--> logits [1,S,V], deltas, taps
 *   loop <= maxNewTokens: argmax --tapped decoder (one id)--> logits, deltas, taps
 *
 * One difference with the split layout: decoder.onnx computes logits at every prompt position, so
 * the final norm sees all S prefill positions (decoder_init computes only the last one's).
 */
export class SherpaCalibrator {
  private readonly stats: TapStats;

  private constructor(private readonly model: SherpaAsrModel, private readonly decoder: TappedSession) {
    this.stats = new TapStats([decoder.taps]);
  }

  static async open(modelDir: string, opts: { threads?: number } = {}): Promise<SherpaCalibrator> {
    // The untapped decoder session is loaded too (SherpaAsrModel checks its interface) but never
    // run: without pre-packing it costs its weights once more, not twice.
    const model = await SherpaAsrModel.load(modelDir, { threads: opts.threads, prepack: false });
    try {
      const decoder = await openTappedSession(await loadModel(model.files.decoder), opts);
      return new SherpaCalibrator(model, decoder);
    } catch (err) {
      await model.release();
      throw err;
    }
  }

  /** One file: encoded as the sherpa runtime does, then prefill + greedy decoding, every tap accumulated. */
  async calibrateFile(path: string, maxNewTokens: number): Promise<PassCounts & { audioTokens: number }> {
    const { model } = this;
    const encoded = await model.encode(logMelSpectrogram((await loadAudio(path)).samples));
    const prompt = buildPrompt(model.tokenizer, { audioTokens: encoded.audioTokens });
    const eos = new Set(model.config.special_tokens.eos_token_ids);
    const S = prompt.ids.length;
    // Rows ever written: the prompt plus one per fed token (the last generated one is never fed).
    const kvFeeds = cacheFeeds(model, S + Math.max(maxNewTokens - 1, 0));
    const via = { session: this.decoder.session, onOutputs: (out: ort.InferenceSession.OnnxValueMapType) => this.stats.add(out, this.decoder.taps) };
    let row = await decoderCall(model, encoded.features, kvFeeds, BigInt64Array.from(prompt.ids, (id) => BigInt(id)), 0, via);
    const tokens: number[] = [];
    let decodePositions = 0;
    // The split calibrator's loop (decoder-calibrator.ts): same stop rules, same counts.
    for (let n = 0; n < maxNewTokens; n++) {
      const next = argmax(row);
      if (eos.has(next)) break;
      tokens.push(next);
      if (n + 1 === maxNewTokens || endsInRepeatedCycle(tokens)) break;
      row = await decoderCall(model, encoded.features, kvFeeds, BigInt64Array.of(BigInt(next)), S + n, via);
      decodePositions += 1;
    }
    return { audioTokens: encoded.audioTokens, prefillPositions: S, decodePositions, tokens };
  }

  normStats(): Record<string, NormStats> {
    return this.stats.normStats();
  }

  async release(): Promise<void> {
    await Promise.all([this.decoder.session.release(), this.model.release()]);
  }
}

/** First index of the largest value (the split calibrator's tie rule). */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
