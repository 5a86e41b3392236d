import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dimsFromConfig, CheckpointConfigSchema } from './config.js';
import { expectedTensors } from './expected-tensors.js';
import { hfNameOf } from './tensor-names.js';
import { floatTensor, writeSafetensors, type TestTensor } from './test-writer.js';

/**
 * A very small, complete checkpoint crafted in tests (independent of fixtures/), so that
 * validation tests can delete, reshape or add one tensor at a time.
 */

/** A minimal config.json in the real layout (field names from the Hugging Face config). */
export function smallConfigJson(opts: { tied?: boolean } = {}): Record<string, unknown> {
  return {
    architectures: ['Qwen3ASRForConditionalGeneration'],
    model_type: 'qwen3_asr',
    some_future_field: { anything: [1, 2, 3] },
    thinker_config: {
      audio_config: {
        num_mel_bins: 16, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 12,
        d_model: 8, output_dim: 10, n_window: 50, n_window_infer: 800, downsample_hidden_size: 4,
        max_source_positions: 1500, conv_chunksize: 500, activation_function: 'gelu', scale_embedding: false,
      },
      text_config: {
        vocab_size: 20, hidden_size: 10, intermediate_size: 14, num_hidden_layers: 2,
        num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, rope_theta: 1000000,
        rms_norm_eps: 1e-6, tie_word_embeddings: opts.tied ?? true, hidden_act: 'silu',
        rope_scaling: { rope_type: 'default', mrope_section: [1, 1, 0], interleaved: true },
      },
      // Inside the 20-token vocabulary (ids past vocab_size are refused).
      audio_token_id: 17, audio_start_token_id: 18, audio_end_token_id: 19,
    },
  };
}

/** The same small model's config.json in the flat transformers-native (-hf) layout. */
export function smallHfConfigJson(opts: { tied?: boolean } = {}): Record<string, unknown> {
  const original = smallConfigJson(opts);
  const thinker = original.thinker_config as Record<string, Record<string, unknown>>;
  const { rope_scaling: _rope, rope_theta: theta, tie_word_embeddings: _tied, ...text } = thinker.text_config;
  return {
    architectures: ['Qwen3ASRForConditionalGeneration'],
    model_type: 'qwen3_asr',
    audio_config: { ...thinker.audio_config, model_type: 'qwen3_asr_encoder' },
    text_config: { ...text, model_type: 'qwen3', rope_parameters: { rope_theta: theta, rope_type: 'default', mrope_section: [1, 1, 0] } },
    audio_token_id: 17, audio_start_token_id: 18, audio_end_token_id: 19,
    tie_word_embeddings: opts.tied ?? true,
  };
}

export interface CraftOptions {
  tied?: boolean;
  /** Write the -hf layout: flat config.json, tensors under their -hf names (default original). */
  format?: 'original' | 'hf';
  /** Replaces the config.json written (after the tensors are planned from the small config). */
  config?: Record<string, unknown>;
  /** Edits the tensor list before writing (drop, reshape, add). */
  edit?: (tensors: TestTensor[]) => TestTensor[];
  /** Splits the tensors over this many shards with an index.json. */
  shards?: number;
}

/** Writes config.json + weights (BF16) for the small config into `dir`. */
export async function craftCheckpoint(dir: string, opts: CraftOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const config = smallConfigJson({ tied: opts.tied });
  const hf = opts.format === 'hf';
  const written = opts.config ?? (hf ? smallHfConfigJson({ tied: opts.tied }) : config);
  await writeFile(join(dir, 'config.json'), JSON.stringify(written, null, 2));
  const dims = dimsFromConfig(CheckpointConfigSchema.parse(config));
  let tensors = [...expectedTensors(dims)].map(([name, shape], k) =>
    floatTensor(hf ? hfNameOf(name)! : name, shape, 'BF16', (i) => ((i + k) % 5) - 2));
  if (opts.edit) tensors = opts.edit(tensors);
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    await writeSafetensors(join(dir, 'model.safetensors'), tensors);
    return;
  }
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s += 1) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.filter((_, i) => i % shards === s);
    for (const t of part) weightMap[t.name] = file;
    await writeSafetensors(join(dir, file), part);
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}
