import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';

/**
 * The checkpoint's config.json (Hugging Face `qwen3_asr`). Only the fields the toolkit
 * needs are required; everything else a real checkpoint carries is tolerated (loose objects).
 */
export const AudioConfigSchema = z.looseObject({
  num_mel_bins: z.number().int().positive(),
  encoder_layers: z.number().int().positive(),
  encoder_attention_heads: z.number().int().positive(),
  encoder_ffn_dim: z.number().int().positive(),
  d_model: z.number().int().positive(),
  output_dim: z.number().int().positive(),
  n_window: z.number().int().positive(),
  n_window_infer: z.number().int().positive(),
  downsample_hidden_size: z.number().int().positive(),
  max_source_positions: z.number().int().positive().default(1500),
  activation_function: z.string().default('gelu'),
  scale_embedding: z.boolean().default(false),
});

export const TextConfigSchema = z.looseObject({
  vocab_size: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive(),
  head_dim: z.number().int().positive(),
  rope_theta: z.number().positive(),
  rms_norm_eps: z.number().positive(),
  tie_word_embeddings: z.boolean().default(false),
  hidden_act: z.string().default('silu'),
  rope_scaling: z.looseObject({
    mrope_section: z.array(z.number().int().nonnegative()).optional(),
    interleaved: z.boolean().optional(),
    rope_type: z.string().optional(),
  }).nullish(),
});

export const CheckpointConfigSchema = z.looseObject({
  model_type: z.literal('qwen3_asr'),
  thinker_config: z.looseObject({
    audio_config: AudioConfigSchema,
    text_config: TextConfigSchema,
    audio_token_id: z.number().int().nonnegative(),
    audio_start_token_id: z.number().int().nonnegative(),
    audio_end_token_id: z.number().int().nonnegative().default(151670),
  }),
});

export type CheckpointConfig = z.infer<typeof CheckpointConfigSchema>;
export type AudioConfig = z.infer<typeof AudioConfigSchema>;
export type TextConfig = z.infer<typeof TextConfigSchema>;

/** Flattened model dimensions every builder uses (derived from the checkpoint config). */
export interface ModelDims {
  audio: {
    numMelBins: number; layers: number; heads: number; ffnDim: number; dModel: number;
    outputDim: number; nWindow: number; nWindowInfer: number; downsampleHidden: number;
    maxSourcePositions: number;
    /** Mel frames per conv chunk: 2 * n_window. */
    chunkFrames: number;
    /** Tokens per attention window: 13 * (n_window_infer / (2 * n_window)) ... see windowTokens(). */
    windowTokens: number;
    /** Frequency bins after the three stride-2 convolutions. */
    freqAfterConv: number;
  };
  text: {
    vocab: number; hidden: number; intermediate: number; layers: number; heads: number;
    kvHeads: number; headDim: number; ropeTheta: number; rmsEps: number; tied: boolean;
    mropeSection: number[];
  };
  tokens: { audio: number; audioStart: number; audioEnd: number };
}

const halve = (t: number): number => Math.floor((t - 1) / 2) + 1;

export function dimsFromConfig(cfg: CheckpointConfig): ModelDims {
  const a = cfg.thinker_config.audio_config;
  const t = cfg.thinker_config.text_config;
  const chunkFrames = 2 * a.n_window;
  // Tokens produced by one full chunk: three stride-2 convs over chunkFrames frames.
  const tokensPerChunk = halve(halve(halve(chunkFrames)));
  return {
    audio: {
      numMelBins: a.num_mel_bins, layers: a.encoder_layers, heads: a.encoder_attention_heads,
      ffnDim: a.encoder_ffn_dim, dModel: a.d_model, outputDim: a.output_dim, nWindow: a.n_window,
      nWindowInfer: a.n_window_infer, downsampleHidden: a.downsample_hidden_size,
      maxSourcePositions: a.max_source_positions,
      chunkFrames,
      windowTokens: tokensPerChunk * (a.n_window_infer / chunkFrames),
      freqAfterConv: halve(halve(halve(a.num_mel_bins))),
    },
    text: {
      vocab: t.vocab_size, hidden: t.hidden_size, intermediate: t.intermediate_size,
      layers: t.num_hidden_layers, heads: t.num_attention_heads, kvHeads: t.num_key_value_heads,
      headDim: t.head_dim, ropeTheta: t.rope_theta, rmsEps: t.rms_norm_eps,
      tied: t.tie_word_embeddings, mropeSection: t.rope_scaling?.mrope_section ?? [24, 20, 20],
    },
    tokens: {
      audio: cfg.thinker_config.audio_token_id,
      audioStart: cfg.thinker_config.audio_start_token_id,
      audioEnd: cfg.thinker_config.audio_end_token_id,
    },
  };
}

/** Formats the first zod issue as `field.path: message`. */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0];
  const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
  return `${path}: ${issue.message}`;
}

/** Parses JSON text against a schema; errors name the file and the field. */
export function parseJsonWith<T extends z.ZodType>(schema: T, text: string, file: string): z.infer<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const res = schema.safeParse(raw);
  if (!res.success) throw new UserError(`${file}: ${describeZodError(res.error)}`);
  return res.data;
}

export async function readJsonWith<T extends z.ZodType>(schema: T, file: string): Promise<z.infer<T>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  return parseJsonWith(schema, text, file);
}

export async function readCheckpointConfig(dir: string): Promise<CheckpointConfig> {
  return readJsonWith(CheckpointConfigSchema, join(dir, 'config.json'));
}

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
});

export type OutputConfig = z.infer<typeof OutputConfigSchema>;
