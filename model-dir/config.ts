import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { fsError } from '../common/errors.js';
import { parseJsonWith, type CheckpointConfig, type ModelDims } from '../checkpoint/config.js';
import { CONFIG_FILE } from './files.js';
import { LAYOUTS } from './layout.js';
import { UserError } from '../common/errors.js';

/**
 * config.json of a model directory (shared/CONTRACT.md "Output"): its schema, the one writer
 * (export) and the one reader every later stage uses.
 */

/** The config.json we write into a model directory (the consumer contract). */
export const OutputConfigSchema = z.looseObject({
  model_type: z.literal('qwen3_asr'),
  encoder: z.looseObject({
    num_layers: z.number().int().positive(), hidden_size: z.number().int().positive(),
    num_heads: z.number().int().positive(), ffn_dim: z.number().int().positive(),
    conv_channels: z.number().int().positive(), output_dim: z.number().int().positive(),
    downsample_factor: z.number().int().positive(), num_mel_bins: z.number().int().positive(),
  }),
  decoder: z.looseObject({
    num_layers: z.number().int().positive(), hidden_size: z.number().int().positive(),
    num_attention_heads: z.number().int().positive(), num_key_value_heads: z.number().int().positive(),
    head_dim: z.number().int().positive(), intermediate_size: z.number().int().positive(),
    vocab_size: z.number().int().positive(), rope_theta: z.number().positive(),
    rms_norm_eps: z.number().positive(), tie_word_embeddings: z.boolean(),
    rope_scaling: z.looseObject({ mrope_section: z.array(z.number().int()), interleaved: z.boolean() }),
  }),
  mel: z.looseObject({
    sample_rate: z.number().int().positive(), n_fft: z.number().int().positive(),
    hop_length: z.number().int().positive(), n_mels: z.number().int().positive(),
    fmin: z.number().nonnegative(), fmax: z.number().positive(),
  }),
  special_tokens: z.looseObject({
    eos_token_ids: z.array(z.number().int()), pad_token_id: z.number().int(),
    im_start_token_id: z.number().int(), im_end_token_id: z.number().int(),
    audio_start_token_id: z.number().int(), audio_end_token_id: z.number().int(),
    audio_pad_token_id: z.number().int(), asr_text_token_id: z.number().int(),
  }),
  embed_tokens_shape: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  embed_tokens_dtype: z.enum(['float16', 'float32']),
  quantization: z.record(z.string(), z.string()).optional(),
  /** Absent in the contract's split layout; 'sherpa-onnx' in that layout's directories (model-dir/layout.ts). */
  layout: z.enum(LAYOUTS).optional(),
  // Forced-aligner directories (model-dir/aligner.ts); ASR ones have no model_kind (or "asr").
  model_kind: z.enum(['asr', 'forced_aligner']).optional(),
  timestamp_token_id: z.number().int().nonnegative().optional(),
  timestamp_segment_ms: z.number().positive().optional(),
  classify_num: z.number().int().positive().optional(),
});

export type OutputConfig = z.infer<typeof OutputConfigSchema>;

/** Fixed Qwen3 token ids (tokenizer added tokens; the audio ids come from config.json). */
export const SPECIAL_TOKENS = {
  endOfText: 151643, imStart: 151644, imEnd: 151645, asrText: 151704,
} as const;

export type EmbedDtype = 'float16' | 'float32';

/** The contract's config.json (fields in a fixed order; validated before it is written). */
export function outputConfig(cfg: CheckpointConfig, dims: ModelDims, embedDtype: EmbedDtype): OutputConfig {
  const a = dims.audio;
  const t = dims.text;
  const ropeScaling = cfg.thinker_config.text_config.rope_scaling;
  const config = {
    model_type: 'qwen3_asr' as const,
    encoder: {
      num_layers: a.layers, hidden_size: a.dModel, num_heads: a.heads, ffn_dim: a.ffnDim,
      conv_channels: a.downsampleHidden, output_dim: a.outputDim,
      // Three stride-2 convolutions over time.
      downsample_factor: 8, num_mel_bins: a.numMelBins,
    },
    decoder: {
      num_layers: t.layers, hidden_size: t.hidden, num_attention_heads: t.heads,
      num_key_value_heads: t.kvHeads, head_dim: t.headDim, intermediate_size: t.intermediate,
      vocab_size: t.vocab, rope_theta: t.ropeTheta, rms_norm_eps: t.rmsEps, tie_word_embeddings: t.tied,
      rope_scaling: { mrope_section: t.mropeSection, interleaved: ropeScaling?.interleaved ?? true },
    },
    mel: { sample_rate: 16000, n_fft: 400, hop_length: 160, n_mels: a.numMelBins, fmin: 0, fmax: 8000 },
    special_tokens: {
      eos_token_ids: [SPECIAL_TOKENS.endOfText, SPECIAL_TOKENS.imEnd], pad_token_id: SPECIAL_TOKENS.endOfText,
      im_start_token_id: SPECIAL_TOKENS.imStart, im_end_token_id: SPECIAL_TOKENS.imEnd,
      audio_start_token_id: dims.tokens.audioStart, audio_end_token_id: dims.tokens.audioEnd,
      audio_pad_token_id: dims.tokens.audio, asr_text_token_id: SPECIAL_TOKENS.asrText,
    },
    embed_tokens_shape: [t.vocab, t.hidden] as [number, number],
    embed_tokens_dtype: embedDtype,
  };
  const res = OutputConfigSchema.safeParse(config);
  if (!res.success) throw new Error(`config.json we would write is invalid: ${res.error.issues[0]?.message}`);
  return config;
}

/** A model directory's config.json as text (for callers that edit it) and validated. */
export async function readModelConfig(dir: string): Promise<{ path: string; text: string; config: OutputConfig }> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) { throw fsError('cannot read', path, err); }
  // transcribe, compare and calibrate read an ASR directory here: an aligner's config parses too, and
  // would only fail later on a missing decoder_init.onnx.
  if (declaresForcedAligner(text)) {
    throw new UserError(`${dir} is a forced-aligner directory (config.json model_kind "forced_aligner"), not a Qwen3-ASR model; use it with align --model-dir, or transcribe --timestamps --aligner`);
  }
  const config = parseJsonWith(OutputConfigSchema, text, path);
  if (config.embed_tokens_shape[1] !== config.decoder.hidden_size) {
    throw new UserError(`${path}: embed_tokens_shape [${config.embed_tokens_shape.join(', ')}] does not match decoder.hidden_size ${config.decoder.hidden_size}`);
  }
  return { path, text, config };
}

/** config.json text says model_kind "forced_aligner" (invalid JSON is left to the schema's message). */
function declaresForcedAligner(text: string): boolean {
  try { return (JSON.parse(text) as { model_kind?: unknown }).model_kind === 'forced_aligner'; } catch { return false; }
}
