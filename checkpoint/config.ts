import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';
import type { CheckpointFormat } from './tensor-names.js';

/**
 * The checkpoint's config.json (Hugging Face `qwen3_asr`). Only the fields the toolkit
 * needs are required; everything else a real checkpoint carries is tolerated (loose objects).
 */
/** thinker_config.model_type of the forced aligner (the ASR models say "qwen3_asr_thinker"). */
export const ALIGNER_MODEL_TYPE = 'qwen3_forced_aligner';

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
    // The forced aligner (shared/ALIGNER.md): model_type "qwen3_forced_aligner", classify_num classes.
    model_type: z.string().optional(),
    classify_num: z.number().int().positive().optional(),
  }),
  timestamp_token_id: z.number().int().nonnegative().optional(),
  timestamp_segment_time: z.number().positive().optional(),
});

/**
 * The flat config.json of the transformers-native `-hf` checkpoints (shared/CONTRACT.md):
 * top-level `audio_config` (`model_type: "qwen3_asr_encoder"`, same fields as the original's)
 * and `text_config`, a plain `qwen3` config whose RoPE settings sit in `rope_parameters`; the
 * token ids and `tie_word_embeddings` at top level; no `thinker_config`.
 */
export const HfTextConfigSchema = z.looseObject({
  vocab_size: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive(),
  head_dim: z.number().int().positive(),
  rms_norm_eps: z.number().positive(),
  hidden_act: z.string().default('silu'),
  tie_word_embeddings: z.boolean().optional(),
  rope_parameters: z.looseObject({
    rope_theta: z.number().positive(),
    rope_type: z.string().optional(),
    mrope_section: z.array(z.number().int().nonnegative()).optional(),
    mrope_interleaved: z.boolean().optional(),
  }),
});

export const HfCheckpointConfigSchema = z.looseObject({
  // The aligner's -hf config may name its own model type; classify_num at top level marks it too.
  model_type: z.enum(['qwen3_asr', ALIGNER_MODEL_TYPE]),
  audio_config: AudioConfigSchema,
  text_config: HfTextConfigSchema,
  audio_token_id: z.number().int().nonnegative(),
  audio_start_token_id: z.number().int().nonnegative().default(151669),
  audio_end_token_id: z.number().int().nonnegative().default(151670),
  tie_word_embeddings: z.boolean().optional(),
  classify_num: z.number().int().positive().optional(),
  timestamp_token_id: z.number().int().nonnegative().optional(),
  timestamp_segment_time: z.number().positive().optional(),
});

export type CheckpointConfig = z.infer<typeof CheckpointConfigSchema>;
export type HfCheckpointConfig = z.infer<typeof HfCheckpointConfigSchema>;
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
  /** Present only for the forced aligner (shared/ALIGNER.md): its head and timestamp token. */
  aligner?: AlignerDims;
}

export interface AlignerDims {
  /** Classes of the head (`thinker.lm_head.weight` [classifyNum, hidden]). */
  classifyNum: number;
  /** The `<timestamp>` token whose positions the head reads. */
  timestampTokenId: number;
  /** Milliseconds per class (timestamp_segment_time). */
  segmentMs: number;
}

/** Whether a (normalised) checkpoint config is the forced aligner's. */
export function isAlignerConfig(cfg: CheckpointConfig): boolean {
  return cfg.thinker_config.model_type === ALIGNER_MODEL_TYPE;
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
    ...(isAlignerConfig(cfg) ? { aligner: alignerDims(cfg) } : {}),
  };
}

/** The aligner's fields (checkConfigConsistency has made sure they are there). */
function alignerDims(cfg: CheckpointConfig): AlignerDims {
  const { classify_num: classifyNum } = cfg.thinker_config;
  const { timestamp_token_id: timestampTokenId, timestamp_segment_time: segmentMs } = cfg;
  if (classifyNum === undefined || timestampTokenId === undefined || segmentMs === undefined) {
    throw new Error('aligner config without classify_num / timestamp_token_id / timestamp_segment_time (not checked?)');
  }
  return { classifyNum, timestampTokenId, segmentMs };
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

/** A checkpoint's config.json, in the original (nested) shape whichever format it was read from. */
export interface ReadConfig {
  format: CheckpointFormat;
  config: CheckpointConfig;
  /** Absolute path of the file read (for messages). */
  file: string;
}

/** Reads config.json (either format), normalises it to the original shape and checks it. */
export async function readCheckpointConfig(dir: string): Promise<CheckpointConfig> {
  return (await readCheckpointConfigWithFormat(dir)).config;
}

export async function readCheckpointConfigWithFormat(dir: string): Promise<ReadConfig> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  return parseCheckpointConfig(text, file);
}

/** Parses config.json text of either format (found by its layout); see readCheckpointConfigWithFormat. */
export function parseCheckpointConfig(text: string, file: string): ReadConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const format = configFormat(raw, file);
  const config = format === 'original'
    ? parseWith(CheckpointConfigSchema, raw, file)
    : originalShape(parseWith(HfCheckpointConfigSchema, raw, file));
  checkConfigConsistency(config, format, file);
  return { format, config, file };
}

function parseWith<T extends z.ZodType>(schema: T, raw: unknown, file: string): z.infer<T> {
  const res = schema.safeParse(raw);
  if (!res.success) throw new UserError(`${file}: ${describeZodError(res.error)}`);
  return res.data;
}

/** Which layout a parsed config.json has: nested thinker_config (original) or flat (-hf). */
function configFormat(raw: unknown, file: string): CheckpointFormat {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UserError(`${file}: expected a JSON object`);
  const obj = raw as Record<string, unknown>;
  const nested = 'thinker_config' in obj;
  const flat = 'audio_config' in obj || 'text_config' in obj;
  if (nested && flat) {
    throw new UserError(`${file}: thinker_config: found both the original nested layout (thinker_config) and the -hf flat layout (top-level ${'audio_config' in obj ? 'audio_config' : 'text_config'}); expected one of them`);
  }
  if (nested) return 'original';
  if (flat) return 'hf';
  throw new UserError(
    `${file}: not a Qwen3-ASR config: found model_type ${JSON.stringify(obj.model_type ?? null)} with neither thinker_config nor audio_config + text_config; `
    + 'expected the original layout (model_type "qwen3_asr" with thinker_config.audio_config/text_config) '
    + 'or the transformers-native -hf layout (model_type "qwen3_asr" with top-level audio_config and text_config)');
}

/**
 * MRoPE sections when a config names none (-hf text_config is a plain qwen3 config). With the
 * three equal position ids speech uses, MRoPE is plain RoPE whatever the split, so this only
 * fills the output config's field: the official 24/20/20 of 64 frequencies, scaled to head_dim.
 */
export function defaultMropeSection(headDim: number): number[] {
  const half = Math.floor(headDim / 2);
  const side = Math.floor((half * 5) / 16);
  return [half - 2 * side, side, side];
}

/** An -hf config in the original (nested) shape the rest of the toolkit reads. */
function originalShape(hf: HfCheckpointConfig): CheckpointConfig {
  const aligner = hf.model_type === ALIGNER_MODEL_TYPE || hf.classify_num !== undefined;
  const { rope_parameters: rope, tie_word_embeddings: textTied, ...text } = hf.text_config;
  const tied = hf.tie_word_embeddings ?? textTied ?? false;
  return CheckpointConfigSchema.parse({
    model_type: 'qwen3_asr',
    thinker_config: {
      audio_config: hf.audio_config,
      text_config: {
        ...text,
        rope_theta: rope.rope_theta,
        tie_word_embeddings: tied,
        rope_scaling: {
          mrope_section: rope.mrope_section ?? defaultMropeSection(text.head_dim),
          interleaved: rope.mrope_interleaved ?? true,
          ...(rope.rope_type !== undefined ? { rope_type: rope.rope_type } : {}),
        },
      },
      audio_token_id: hf.audio_token_id,
      audio_start_token_id: hf.audio_start_token_id,
      audio_end_token_id: hf.audio_end_token_id,
      ...(aligner ? { model_type: ALIGNER_MODEL_TYPE, classify_num: hf.classify_num } : {}),
    },
    ...(aligner ? { timestamp_token_id: hf.timestamp_token_id, timestamp_segment_time: hf.timestamp_segment_time } : {}),
  });
}

/** The config.json field a check is about, spelled as the given format spells it. */
export function configField(format: CheckpointFormat, part: 'audio' | 'text' | 'top' | 'rope', key: string): string {
  if (format === 'original') {
    const base = { audio: 'thinker_config.audio_config.', text: 'thinker_config.text_config.', top: 'thinker_config.', rope: 'thinker_config.text_config.rope_scaling.' }[part];
    return base + key;
  }
  const base = { audio: 'audio_config.', text: 'text_config.', top: '', rope: 'text_config.rope_parameters.' }[part];
  return base + key;
}

/** What the graph builders implement; anything else would export a different model silently. */
const SUPPORTED_AUDIO_ACT = 'gelu';
const SUPPORTED_TEXT_ACT = 'silu';
const MAX_RMS_NORM_EPS = 1e-2;

/**
 * Cross-checks config fields against each other (cheap, before any tensor is read): attention
 * heads that split the width, the encoder's attention window, MRoPE sections, eps range,
 * activations the graphs implement, special-token ids inside the vocabulary.
 */
export function checkConfigConsistency(cfg: CheckpointConfig, format: CheckpointFormat, file: string): void {
  const a = cfg.thinker_config.audio_config;
  const t = cfg.thinker_config.text_config;
  const fail = (part: 'audio' | 'text' | 'top' | 'rope', key: string, why: string): never => {
    throw new UserError(`${file}: ${configField(format, part, key)}: ${why}`);
  };
  if (a.d_model % a.encoder_attention_heads !== 0) {
    fail('audio', 'encoder_attention_heads', `${a.encoder_attention_heads} heads do not divide d_model ${a.d_model}`);
  }
  const chunk = 2 * a.n_window;
  // The official encoder attends inside windows of n_window_infer // (2*n_window) chunks.
  if (a.n_window_infer % chunk !== 0) {
    fail('audio', 'n_window_infer', `${a.n_window_infer} is not a multiple of 2*n_window = ${chunk} (the encoder's attention window is n_window_infer / (2*n_window) chunks of ${chunk} mel frames)`);
  }
  if (a.activation_function !== SUPPORTED_AUDIO_ACT) {
    fail('audio', 'activation_function', `${JSON.stringify(a.activation_function)} is not supported (the Qwen3-ASR encoder uses "${SUPPORTED_AUDIO_ACT}")`);
  }
  if (t.hidden_act !== SUPPORTED_TEXT_ACT) {
    fail('text', 'hidden_act', `${JSON.stringify(t.hidden_act)} is not supported (the Qwen3 decoder uses "${SUPPORTED_TEXT_ACT}")`);
  }
  if (!(t.rms_norm_eps > 0 && t.rms_norm_eps <= MAX_RMS_NORM_EPS)) {
    fail('text', 'rms_norm_eps', `${t.rms_norm_eps} is outside (0, ${MAX_RMS_NORM_EPS}] (Qwen3 uses 1e-6)`);
  }
  if (t.num_attention_heads % t.num_key_value_heads !== 0) {
    fail('text', 'num_key_value_heads', `${t.num_key_value_heads} key/value heads do not divide num_attention_heads ${t.num_attention_heads}`);
  }
  if (t.head_dim % 2 !== 0) fail('text', 'head_dim', `${t.head_dim} is odd (rotary embeddings rotate halves of head_dim)`);
  const section = t.rope_scaling?.mrope_section;
  if (section !== undefined) {
    const sum = section.reduce((x, y) => x + y, 0);
    if (section.length !== 3 || sum !== t.head_dim / 2) {
      fail('rope', 'mrope_section', `[${section.join(',')}] must be three numbers summing to head_dim/2 = ${t.head_dim / 2}`);
    }
  }
  const tokens: [string, number][] = [
    ['audio_token_id', cfg.thinker_config.audio_token_id],
    ['audio_start_token_id', cfg.thinker_config.audio_start_token_id],
    ['audio_end_token_id', cfg.thinker_config.audio_end_token_id],
  ];
  for (const [key, id] of tokens) {
    if (id >= t.vocab_size) fail('top', key, `${id} is outside the vocabulary (vocab_size ${t.vocab_size})`);
  }
  if (isAlignerConfig(cfg)) checkAlignerConfig(cfg, format, file);
}

/**
 * The forced aligner's own fields: classify_num (thinker_config in the original layout, top level
 * in -hf), timestamp_token_id and timestamp_segment_time at top level in both; its head is never
 * tied (a [classify_num, hidden] layer cannot share the [vocab, hidden] embedding).
 */
function checkAlignerConfig(cfg: CheckpointConfig, format: CheckpointFormat, file: string): void {
  const at = (part: 'top' | 'text', key: string): string => (part === 'top' && format === 'original' && key !== 'classify_num'
    ? key : configField(format, part, key));
  const fail = (part: 'top' | 'text', key: string, why: string): never => {
    throw new UserError(`${file}: ${at(part, key)}: ${why}`);
  };
  const what = 'the forced aligner (thinker_config.model_type "qwen3_forced_aligner")';
  if (cfg.thinker_config.classify_num === undefined) fail('top', 'classify_num', `missing; ${what} needs its number of timestamp classes`);
  if (cfg.timestamp_token_id === undefined) fail('top', 'timestamp_token_id', `missing; ${what} reads its head at the <timestamp> token`);
  if (cfg.timestamp_segment_time === undefined) fail('top', 'timestamp_segment_time', `missing; ${what} needs the milliseconds per class`);
  const vocab = cfg.thinker_config.text_config.vocab_size;
  if ((cfg.timestamp_token_id ?? 0) >= vocab) fail('top', 'timestamp_token_id', `${cfg.timestamp_token_id} is outside the vocabulary (vocab_size ${vocab})`);
  if (cfg.thinker_config.text_config.tie_word_embeddings) {
    fail('text', 'tie_word_embeddings', `true, but ${what} has its own [classify_num, hidden] head that cannot be tied to the embedding`);
  }
}
