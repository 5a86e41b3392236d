import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { OutputConfig } from '../model-dir/config.js';
import { loadModel } from '../common/onnx/index.js';
import { endsInRepeatedCycle, type Prompt } from '../runtime/prompt.js';
import { EmbeddingTable } from '../runtime/session.js';
import type { NormStats } from './stats-file.js';
import { TapStats } from './tap-stats.js';
import { openTappedSession, type TappedSession } from './tapped-session.js';
import { EMBED_TOKENS_BIN, graphFileName } from '../model-dir/files.js';

/**
 * Runs the float decoder graphs of a model directory the way a consumer does (decoder_init on
 * the prompt, then greedy decoder_step with embed_tokens.bin rows) on tapped copies, adding every
 * norm output it sees to running per-channel |activation| sums:
 *
 *   prompt + audio_features ─decoder_init─▶ logits, KV, taps (all prefill positions)
 *   loop ≤ maxNewTokens: argmax ─embed row─decoder_step─▶ logits, KV, taps (one decode position)
 */

export interface PassCounts {
  prefillPositions: number;
  decodePositions: number;
  /** Generated token ids (without the EOS that ended generation). */
  tokens: number[];
}

export class DecoderCalibrator {
  private readonly stats: TapStats;

  private constructor(
    private readonly config: OutputConfig,
    private readonly init: TappedSession,
    private readonly step: TappedSession,
    private readonly embeddings: EmbeddingTable,
  ) {
    this.stats = new TapStats([init.taps, step.taps]);
  }

  static async open(modelDir: string, config: OutputConfig, opts: { threads?: number } = {}): Promise<DecoderCalibrator> {
    const embeddings = await EmbeddingTable.open(join(modelDir, EMBED_TOKENS_BIN), config.embed_tokens_shape, config.embed_tokens_dtype);
    const opened: TappedSession[] = [];
    try {
      for (const g of ['decoder_init', 'decoder_step'] as const) opened.push(await openTappedSession(await loadModel(join(modelDir, graphFileName(g))), opts));
      return new DecoderCalibrator(config, opened[0], opened[1], embeddings);
    } catch (err) {
      await Promise.all(opened.map((s) => s.session.release()));
      await embeddings.close();
      throw err;
    }
  }

  /** Prefill + greedy decoding of one prompt, accumulating every tap. */
  async run(prompt: Prompt, audioFeatures: ort.Tensor, maxNewTokens: number): Promise<PassCounts> {
    const eos = new Set(this.config.special_tokens.eos_token_ids);
    const hidden = this.config.decoder.hidden_size;
    const S = prompt.ids.length;
    let out = await this.init.session.run({
      input_ids: int64(prompt.ids, [1, S]),
      position_ids: int64(prompt.ids.map((_, i) => i), [1, S]),
      audio_features: audioFeatures,
      audio_offset: int64([prompt.audioOffset], [1]),
    });
    this.stats.add(out, this.init.taps);
    const tokens: number[] = [];
    let decodePositions = 0;
    for (let n = 0; n < maxNewTokens; n++) {
      const next = argmaxLast(out.logits);
      if (eos.has(next)) break;
      tokens.push(next);
      if (n + 1 === maxNewTokens || endsInRepeatedCycle(tokens)) break;
      out = await this.step.session.run({
        input_embeds: new ort.Tensor('float32', await this.embeddings.row(next), [1, 1, hidden]),
        position_ids: int64([S + n], [1, 1]),
        past_keys: out.present_keys,
        past_values: out.present_values,
      });
      this.stats.add(out, this.step.taps);
      decodePositions += 1;
    }
    return { prefillPositions: S, decodePositions, tokens };
  }

  /** Per norm: the linears it feeds, positions seen and mean |activation| per channel. */
  normStats(): Record<string, NormStats> {
    return this.stats.normStats();
  }

  async release(): Promise<void> {
    await Promise.all([this.init.session.release(), this.step.session.release(), this.embeddings.close()]);
  }
}

const int64 = (values: number[], dims: number[]): ort.Tensor =>
  new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);

/** Argmax over the last position of [1, S', V] logits. */
function argmaxLast(logits: ort.Tensor): number {
  const V = logits.dims[logits.dims.length - 1];
  const data = logits.data as Float32Array;
  const base = data.length - V;
  let best = 0;
  for (let i = 1; i < V; i++) if (data[base + i] > data[base + best]) best = i;
  return best;
}
