import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import type { OutputConfig } from '../model-dir/config.js';
import { loadModel } from '../common/onnx/index.js';
import { endsInRepeatedCycle, type Prompt } from '../runtime/prompt.js';
import { EmbeddingTable } from '../runtime/session.js';
import { ActivationStats } from './activation-stats.js';
import type { NormStats } from './stats-file.js';
import { openTappedSession, type Tap, type TappedSession } from './tapped-session.js';
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
  private readonly stats: ActivationStats;
  private readonly linears = new Map<string, Set<string>>();

  private constructor(
    private readonly config: OutputConfig,
    private readonly init: TappedSession,
    private readonly step: TappedSession,
    private readonly embeddings: EmbeddingTable,
  ) {
    const channels = new Map<string, number>();
    for (const t of [...init.taps, ...step.taps]) {
      const seen = channels.get(t.key);
      if (seen !== undefined && seen !== t.channels) throw new UserError(`norm ${t.key} has ${seen} channels in one decoder graph and ${t.channels} in the other`);
      channels.set(t.key, t.channels);
      const set = this.linears.get(t.key) ?? new Set<string>();
      for (const l of t.linears) set.add(l);
      this.linears.set(t.key, set);
    }
    this.stats = new ActivationStats(channels);
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
    this.accumulate(out, this.init.taps);
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
      this.accumulate(out, this.step.taps);
      decodePositions += 1;
    }
    return { prefillPositions: S, decodePositions, tokens };
  }

  /** Per norm: the linears it feeds, positions seen and mean |activation| per channel. */
  normStats(): Record<string, NormStats> {
    const out: Record<string, NormStats> = {};
    for (const key of this.stats.keys()) {
      const m = this.stats.means(key);
      if (m.positions === 0) throw new UserError(`norm ${key}: no positions were recorded (no calibration audio?)`);
      out[key] = { linears: [...this.linears.get(key)!].sort(), positions: m.positions, mean_abs: Array.from(m.meanAbs) };
    }
    return out;
  }

  async release(): Promise<void> {
    await Promise.all([this.init.session.release(), this.step.session.release(), this.embeddings.close()]);
  }

  private accumulate(out: ort.InferenceSession.OnnxValueMapType, taps: Tap[]): void {
    for (const t of taps) {
      const v = out[t.value];
      if (!v || v.type !== 'float32') throw new Error(`tap ${t.value} missing from the outputs or not float32`);
      if (v.dims[v.dims.length - 1] !== t.channels) throw new Error(`tap ${t.value}: last dim ${v.dims[v.dims.length - 1]}, expected ${t.channels}`);
      this.stats.add(t.key, v.data as Float32Array);
    }
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
